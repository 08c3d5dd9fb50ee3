"""Mutual information: bounds on critic scores (used for training) and estimators on arrays."""

from dim_lightning.mi.arrays import entropy_discrete, entropy_knn
from dim_lightning.mi.auto import AutoEstimate, auto_mi
from dim_lightning.mi.bounds import (
    BOUNDS,
    Bound,
    DonskerVaradhan,
    Scores,
    infonce,
    jsd,
    make_bound,
    nwj,
    register_bound,
    smile,
)
from dim_lightning.mi.estimate import max_mutual_information, mutual_information
from dim_lightning.mi.gaussian import copula, gaussian
from dim_lightning.mi.neural import neural_mi, neural_mi_sampled

__all__ = [
    "BOUNDS",
    "AutoEstimate",
    "Bound",
    "DonskerVaradhan",
    "Scores",
    "auto_mi",
    "copula",
    "entropy_discrete",
    "entropy_knn",
    "gaussian",
    "infonce",
    "jsd",
    "make_bound",
    "max_mutual_information",
    "mutual_information",
    "neural_mi",
    "neural_mi_sampled",
    "nwj",
    "register_bound",
    "smile",
]
