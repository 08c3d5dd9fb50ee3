"""Distributions with known mutual information, to validate estimators (the tests and
benchmarks/mi_ground_truth.py use them; so can you, for an estimator of your own).

- `linear_gaussian`: x ~ N(0, sx), y = cross x + unit Gaussian noise; closed-form MI, any dimensions.
- `staircase`: the Poole et al. (2019) benchmark, a sampler of d-dimensional pairs with a chosen MI.
- `discrete_channel`: samples of a joint pmf over two finite alphabets, and `pmf_mi`, its exact MI.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def linear_gaussian(
    cross: np.ndarray, sx: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """n pairs with x ~ N(0, sx) and y = cross @ x + N(0, I); MI = 0.5 log det(cross sx cross^T + I)."""
    x = rng.multivariate_normal(np.zeros(len(sx)), sx, size=n)
    y = x @ cross.T + rng.standard_normal((n, cross.shape[0]))
    return x, y, 0.5 * float(np.linalg.slogdet(cross @ sx @ cross.T + np.eye(cross.shape[0]))[1])


def staircase(mi: float, rng: np.random.Generator, dim: int = 20) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """A sampler of pairs x, y in R^dim with I(X; Y) = mi nats: x ~ N(0, I), y = rho x + sqrt(1 - rho^2) e,
    each of the dim coordinate pairs carrying mi / dim nats."""
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, dim))
        return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))

    return sample


def pmf_mi(pmf: np.ndarray) -> float:
    """Exact MI (nats) of a joint pmf given as a 2-D array."""
    px, py = pmf.sum(1, keepdims=True), pmf.sum(0, keepdims=True)
    nonzero = pmf > 0
    return float((pmf[nonzero] * np.log(pmf[nonzero] / (px @ py)[nonzero])).sum())


def discrete_channel(pmf: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of symbols (row index, column index) drawn from the joint pmf."""
    cells = rng.choice(pmf.size, size=n, p=pmf.ravel())
    return cells // pmf.shape[1], cells % pmf.shape[1]
