"""Input checks shared by the array estimators: clear errors instead of silent nonsense."""

from __future__ import annotations

import numpy as np

from dim_lightning.errors import DIMError, require


def as_samples(values, name: str) -> np.ndarray:
    """(n,) or (n, d) array-like of real numbers -> float64 array [n, d] with finite values, n and d at least 1."""
    kind = np.asarray(values).dtype.kind if isinstance(values, np.ndarray | np.generic) else "f"
    require(
        kind in "biuf",
        f"{name} holds {np.asarray(values).dtype} values, not real numbers; pass real numbers (of complex data, "
        "e.g. np.abs(x) or x.real: its imaginary part is not silently dropped)",
    )
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DIMError(f"{name} must hold numbers ({error})") from error
    require(array.ndim in (1, 2), f"{name} must have shape (n,) or (n, d), got an array of shape {array.shape}")
    require(array.size > 0, f"{name} is empty (shape {array.shape}); pass at least a few samples of a value each")
    array = array.reshape(len(array), -1)
    require(
        bool(np.isfinite(array).all()),
        lambda: (
            f"{name} contains NaN or inf in {int((~np.isfinite(array)).any(axis=1).sum())} rows; "
            "drop or impute those rows first"
        ),
    )
    return array


def paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_samples(x, "x"), as_samples(y, "y")
    require(
        len(x) == len(y),
        f"x and y must hold the same samples, one per row, but x has {len(x)} rows and y has {len(y)}",
    )
    return x, y


def standardized(array: np.ndarray, name: str) -> np.ndarray:
    """`array` with each column scaled to unit standard deviation (computed once the column is divided by its
    largest magnitude, so values near either end of the float range neither overflow nor underflow to a wrong
    scale); a constant column is an error."""
    peak = np.abs(array).max(axis=0)
    scaled = array / np.where(peak > 0, peak, 1.0)
    std = scaled.std(axis=0)
    constant = np.flatnonzero(std == 0)
    require(
        constant.size == 0,
        f"{name} has constant column(s) {constant.tolist()}: a constant carries no information and breaks "
        "distance-based estimators; drop those columns",
    )
    return scaled / std
