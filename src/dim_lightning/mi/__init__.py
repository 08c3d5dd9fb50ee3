"""Mutual-information bounds on critic scores (used for training) and estimators on arrays."""

from dim_lightning.mi.bounds import Bound, DonskerVaradhan, Scores, infonce, jsd, nwj, smile

__all__ = ["Bound", "DonskerVaradhan", "Scores", "infonce", "jsd", "nwj", "smile"]
