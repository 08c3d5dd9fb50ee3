"""Distributions with known mutual information, to validate estimators (the tests and
benchmarks/mi_ground_truth.py use them; so can you, for an estimator of your own).

- `linear_gaussian`: x ~ N(0, sx), y = cross x + unit Gaussian noise; closed-form MI, any dimensions.
- `staircase`: the Poole et al. (2019) benchmark, a sampler of d-dimensional pairs with a chosen MI.
- `discrete_channel`: samples of a joint pmf over two finite alphabets, and `pmf_mi`, its exact MI.
- `Task` and `benchmark_tasks`: 40 distributions with closed-form MI (Gaussians over a dimension sweep, Student-t,
  Gaussians seen through invertible maps of each side, `TRANSFORMS`), from `gaussian_mi` and `student_t_mi`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, gammaln, ndtr


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


def _logdet(matrix: np.ndarray) -> float:
    return float(np.linalg.slogdet(matrix)[1])


def gaussian_mi(cov: np.ndarray, dx: int) -> float:
    """I(X; Y) of a joint Gaussian with covariance `cov`, X the first `dx` coordinates:
    0.5 (log det cov_xx + log det cov_yy - log det cov)."""
    return 0.5 * (_logdet(cov[:dx, :dx]) + _logdet(cov[dx:, dx:]) - _logdet(cov))


def _t_entropy_term(dof: float, dim: int) -> float:
    """The part of a `dim`-variate Student-t entropy that depends on the dimension beyond the scale's log det
    and (dof pi)^(dim / 2): log G(dof/2) - log G((dof + dim)/2) + (dof + dim)/2 (psi((dof + dim)/2) - psi(dof/2))."""
    half, half_dim = dof / 2, (dof + dim) / 2
    return float(gammaln(half) - gammaln(half_dim) + half_dim * (digamma(half_dim) - digamma(half)))


def student_t_mi(scale: np.ndarray, dx: int, dof: float) -> float:
    """I(X; Y) of a joint multivariate Student-t with `dof` degrees of freedom and scale matrix `scale`, X the
    first `dx` coordinates: the Gaussian MI of `scale` plus a term of dof and the dimensions alone (the
    marginals of a t are t's with the same dof, so the entropies' log det parts give the Gaussian MI). The
    extra term is positive: even an uncorrelated t shares its one chi-square scale across all coordinates."""
    dim = len(scale)
    extra = _t_entropy_term(dof, dx) + _t_entropy_term(dof, dim - dx) - _t_entropy_term(dof, dim)
    return gaussian_mi(scale, dx) + extra


@dataclass(frozen=True)
class Task:
    """A distribution with known MI: `sample(n, rng)` returns n pairs (x [n, dx], y [n, dy]); `mi` in nats.
    `cov` is the joint covariance (Gaussian) or scale (Student-t) before `dof` and the transforms."""

    name: str
    family: str
    dx: int
    dy: int
    mi: float
    cov: np.ndarray
    dof: float | None = None
    transform: str | None = None

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        joint = rng.multivariate_normal(np.zeros(len(self.cov)), self.cov, size=n, method="cholesky")
        if self.dof is not None:
            joint = joint / np.sqrt(rng.chisquare(self.dof, size=(n, 1)) / self.dof)
        x, y = joint[:, : self.dx], joint[:, self.dx :]
        if self.transform is not None:
            x, y = TRANSFORMS[self.transform](x), TRANSFORMS[self.transform](y)
        return x, y


def spiral(values: np.ndarray, turns: float) -> np.ndarray:
    """Rotate coordinate pairs (0, 1), (2, 3), ... by the angle `turns` * |v|^2: the norm is kept, so the map
    is invertible (rotate back by the same angle), yet it mixes coordinates as no per-coordinate map can."""
    angle = turns * (values**2).sum(axis=1, keepdims=True)
    out = values.copy()
    pairs = len(values[0]) // 2
    first, second = values[:, 0 : 2 * pairs : 2], values[:, 1 : 2 * pairs : 2]
    out[:, 0 : 2 * pairs : 2] = np.cos(angle) * first - np.sin(angle) * second
    out[:, 1 : 2 * pairs : 2] = np.sin(angle) * first + np.cos(angle) * second
    return out


# Invertible maps of each side (MI is unchanged by them): per coordinate, except the spiral.
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "normal_cdf": ndtr,
    "half_cube": lambda v: v * np.sqrt(np.abs(v)),
    "asinh": lambda v: np.arcsinh(3 * v),
    "spiral": lambda v: spiral(v, 1 / v.shape[1]),  # about one radian at the typical squared norm, d
}


def coordinate_pairs(dx: int, dy: int, rho: float, pairs: int | None = None) -> np.ndarray:
    """Joint covariance of unit-variance coordinates where x_i and y_i are correlated by `rho` for the first
    `pairs` (default min(dx, dy)) indices and everything else is uncorrelated."""
    cov = np.eye(dx + dy)
    for i in range(min(dx, dy) if pairs is None else pairs):
        cov[i, dx + i] = cov[dx + i, i] = rho
    return cov


def spread_rho(mi: float, pairs: int) -> float:
    """The correlation of each of `pairs` coordinate pairs that together carry `mi` nats (as Gaussians)."""
    return math.sqrt(1 - math.exp(-2 * mi / pairs))


def dense_cov(dx: int, dy: int, mi: float, rng: np.random.Generator) -> np.ndarray:
    """Joint covariance of x ~ N(0, 0.5 I + 0.5) (correlated coordinates) and y = s A x + N(0, I), A a dense
    Gaussian matrix and s chosen so that I(X; Y) = mi: every coordinate of y depends on every one of x."""
    sx = 0.5 * np.eye(dx) + 0.5
    cross = rng.standard_normal((dy, dx))

    def joint(s: float) -> np.ndarray:
        a = s * cross
        return np.block([[sx, sx @ a.T], [a @ sx, a @ sx @ a.T + np.eye(dy)]])

    scale = brentq(lambda s: gaussian_mi(joint(s), dx) - mi, 1e-6, 1e3)
    return joint(scale)


def _task(name: str, family: str, dx: int, cov: np.ndarray, dof=None, transform=None) -> Task:
    mi = gaussian_mi(cov, dx) if dof is None else student_t_mi(cov, dx, dof)
    return Task(name, family, dx, len(cov) - dx, mi, cov, dof, transform)


def benchmark_tasks(seed: int = 0) -> list[Task]:
    """The 40 distributions of benchmarks/mi_ground_truth.py: Gaussians over a dimension sweep (1 to 50 per
    side; coordinate-wise, dense and sparse correlations; independent), Student-t with 1 to 3 dof, and
    Gaussians seen through invertible maps of each side."""
    rng = np.random.default_rng(seed)
    tasks = [_task(f"diagonal {d}+{d}", "gaussian", d, coordinate_pairs(d, d, spread_rho(1.0, d))) for d in DIMS]
    tasks += [_task(f"dense {d}+{d}", "gaussian", d, dense_cov(d, d, 1.0, rng)) for d in DIMS[1:]]
    tasks += [_task(f"sparse {d}+{d}", "gaussian", d, coordinate_pairs(d, d, spread_rho(1.0, 2), 2)) for d in (10, 50)]
    tasks += [_task(f"independent {d}+{d}", "gaussian", d, np.eye(2 * d)) for d in (5, 50)]
    for dof in (1, 2, 3):
        tasks += [
            _task(f"student-t dof={dof} {d}+{d}", "student-t", d, coordinate_pairs(d, d, 0.5), dof) for d in (1, 3, 10)
        ]
    tasks += [_task("student-t dof=1 uncorrelated 2+2", "student-t", 2, np.eye(4), 1.0)]
    for transform, dims in (
        ("normal_cdf", (1, 5, 25)),
        ("half_cube", (1, 5, 25)),
        ("asinh", (1, 5, 25)),
        ("spiral", (2, 3, 5, 10)),
    ):
        for d in dims:
            tasks.append(
                _task(f"{transform} {d}+{d}", transform, d, coordinate_pairs(d, d, spread_rho(1.0, d)), None, transform)
            )
    return tasks


DIMS = (1, 2, 3, 5, 10, 25, 50)
