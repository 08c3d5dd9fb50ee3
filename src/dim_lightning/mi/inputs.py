"""Input checks shared by the array estimators: clear errors instead of silent nonsense."""

from __future__ import annotations

import numpy as np

from dim_lightning.errors import DIMError, require


def as_samples(values, name: str) -> np.ndarray:
    """(n,) or (n, d) array-like -> float64 array [n, d] with finite values."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DIMError(f"{name} must hold numbers ({error})") from error
    require(array.ndim in (1, 2), f"{name} must have shape (n,) or (n, d), got an array of shape {array.shape}")
    array = array.reshape(len(array), -1)
    require(len(array) > 0, f"{name} is empty; pass at least a few samples")
    require(
        bool(np.isfinite(array).all()),
        f"{name} contains NaN or inf in {int((~np.isfinite(array)).any(axis=1).sum())} rows; "
        "drop or impute those rows first",
    )
    return array


def paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_samples(x, "x"), as_samples(y, "y")
    require(
        len(x) == len(y),
        f"x and y must hold the same samples, one per row, but x has {len(x)} rows and y has {len(y)}",
    )
    return x, y


def require_varying(array: np.ndarray, name: str) -> None:
    constant = np.flatnonzero(array.std(axis=0) == 0)
    require(
        constant.size == 0,
        f"{name} has constant column(s) {constant.tolist()}: a constant carries no information and breaks "
        "distance-based estimators; drop those columns",
    )
