"""A bootstrap interval of an MI estimate's sampling noise: which rows each resample holds, and how the
resampled estimates become a 95% interval around the estimate (the CLI's `--bootstrap`, `auto_mi`)."""

from __future__ import annotations

import math

import numpy as np


def bootstrap_indices(n: int, resamples: int, method: str, seed: int) -> list[np.ndarray]:
    """Rows drawn with replacement. KSG and the neural methods keep each drawn row once (about 63% of n
    distinct rows): for KSG a repeated row is a zero distance that fakes infinite density, and a neural
    critic would be scored on copies of the rows it trained on."""
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    return draws if method in ("plugin", "histogram") else [np.unique(idx) for idx in draws]


def bootstrap_interval(estimate: float, draws: list[float], sizes: list[int], n: int) -> dict:
    """A 95% interval of the estimate's sampling variability, and the resamples' shift from the estimate.

    Resamples are smaller (distinct rows) or have ties, and the estimators are biased at small n, so the
    resampled values sit off the estimate (KSG's below it). The spread of the draws around their median is
    therefore moved onto the estimate, so the interval always contains it. Resamples of m < n distinct rows
    are subsamples without replacement, whose spread is sqrt((n - m) / m) times the full sample's, so their
    deviations are scaled by sqrt(m / (n - m)). It covers sampling noise only: an estimator's own bias (KSG's in many
    dimensions, benchmarks/README.md) is not inside it; `bootstrap_shift_nats` shows its direction."""
    values = np.asarray(draws)
    median = float(np.median(values))
    m = float(np.mean(sizes))
    scale = 1.0 if m >= n else math.sqrt(m / (n - m))
    low, high = np.percentile(values, [2.5, 97.5])
    return {
        "ci95_nats": [estimate - scale * (median - float(low)), estimate + scale * (float(high) - median)],
        "bootstrap_shift_nats": median - estimate,
    }
