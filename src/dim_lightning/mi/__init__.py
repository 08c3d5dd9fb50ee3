"""Mutual information: bounds on critic scores (used for training) and estimators on arrays."""

from dim_lightning.mi.arrays import (
    entropy_discrete,
    entropy_knn,
    max_mutual_information,
    mutual_information,
)
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
from dim_lightning.mi.neural import neural_mi, neural_mi_sampled

__all__ = [
    "BOUNDS",
    "Bound",
    "DonskerVaradhan",
    "Scores",
    "entropy_discrete",
    "entropy_knn",
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
