"""The classical MI estimators on arrays, in nats: `plugin` (discrete data), `histogram` (binned, then plug-in) and
`ksg` (k nearest neighbours, continuous and multivariate), with the entropies they rest on. Every method by name,
the neural ones included: `dim_lightning.mi.estimate`. When to use which: docs/mi-toolkit.md."""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from sklearn.neighbors import KDTree

from dim_lightning.errors import require
from dim_lightning.mi.inputs import as_samples, paired, standardized
from dim_lightning.utils.cores import usable_cores


def _symbols(array: np.ndarray) -> np.ndarray:
    """Each distinct row -> an integer symbol."""
    return np.unique(array, axis=0, return_inverse=True)[1].reshape(-1)


def entropy_discrete(values, miller_madow: bool = False) -> float:
    """Plug-in Shannon entropy (nats) of discrete samples; rows of a 2-D array are joint symbols."""
    counts = np.bincount(_symbols(as_samples(values, "values")))
    counts = counts[counts > 0]
    n = counts.sum()
    p = counts / n
    h = float(-(p * np.log(p)).sum())
    return h + (len(counts) - 1) / (2 * n) if miller_madow else h


def entropy_knn(values, k: int = 3) -> float:
    """Kozachenko-Leonenko k-NN entropy (nats) of continuous samples, max-norm."""
    x = as_samples(values, "values")
    n, d = x.shape
    require(n > k, f"k-NN entropy needs more samples than k, got n={n}, k={k}")
    radius = cKDTree(x).query(x, k=k + 1, p=np.inf)[0][:, -1]
    require(bool((radius > 0).all()), "duplicate samples give zero k-NN distances; add noise or use plugin")
    return float(digamma(n) - digamma(k) + d * np.mean(np.log(2 * radius)))


def _require_discrete(array: np.ndarray, name: str) -> None:
    continuous = np.flatnonzero((array != np.round(array)).any(axis=0))
    require(
        continuous.size == 0,
        lambda: (
            f"the plug-in estimate counts symbols, but column(s) {continuous.tolist()} of {name} hold non-integer "
            f"values ({len(np.unique(array[:, continuous[0]]))} distinct in {len(array)} rows): every row would be "
            "its own symbol and the MI would read H(y); for continuous data use method='ksg' or "
            "method='histogram', or map the values to integer codes first"
        ),
    )


def plugin(x, y, miller_madow: bool = False) -> float:
    """H(X) + H(Y) - H(X, Y) from empirical frequencies (rows of a 2-D array are joint symbols), optionally with
    the Miller-Madow bias correction. Non-integer values are refused: each row would be its own symbol and the
    estimate would read H(Y)."""
    x, y = paired(x, y)
    _require_discrete(x, "x")
    _require_discrete(y, "y")
    joint = np.concatenate([x, y], axis=1)
    return entropy_discrete(x, miller_madow) + entropy_discrete(y, miller_madow) - entropy_discrete(joint, miller_madow)


MAX_BINS = 100_000  # per column; a rule that asks for more is refused before numpy allocates the edges


def _require_binnable(column: np.ndarray, bins) -> None:
    """A column's span fits a float64, and Freedman-Diaconis (also in 'auto'), which sizes bins by the
    interquartile range, asks for at most `MAX_BINS`: a few outliers far from a tight middle would ask numpy for
    billions of edges."""
    span = float(column.max()) - float(column.min())
    require(np.isfinite(span), "a column spans more than float64 can hold; rescale x and y before binning them")
    if bins in ("fd", "auto"):
        q1, q3 = np.percentile(column, [25, 75])
        count = span / (2 * (q3 - q1) * len(column) ** (-1 / 3)) if q3 > q1 else 1
        require(
            count <= MAX_BINS,
            f"bins={bins} would cut a column into {count:.3g} bins (outliers span {span / (q3 - q1):.3g} "
            f"interquartile ranges); pass a count, e.g. --bins 32",
        )


def _bin_edges(column: np.ndarray, bins) -> np.ndarray:
    """numpy's edges for `bins`; a rule that gives one bin for a column that varies falls back to Sturges'.
    Freedman-Diaconis sizes bins by the interquartile range, which is 0 for tied data (ReLU or sparse
    features), and one bin would read every MI as 0."""
    _require_binnable(column, bins)
    edges = np.histogram_bin_edges(column, bins=bins)
    if isinstance(bins, str) and len(edges) < 3 and column.min() < column.max():
        edges = np.histogram_bin_edges(column, bins="sturges")
    return edges


def _binned(array: np.ndarray, bins) -> np.ndarray:
    return np.stack([np.digitize(c, _bin_edges(c, bins)[1:-1]) for c in array.T], axis=1)


def histogram(x, y, bins="fd", miller_madow: bool = False) -> float:
    """Bin each column (`bins`: a count or a numpy rule such as 'fd', 'sturges', 'sqrt'; never one bin for a
    column that varies), then plug-in."""
    x, y = paired(x, y)
    return plugin(_binned(x, bins), _binned(y, bins), miller_madow)


def default_workers() -> int:
    """Threads the k-NN searches use unless told: OMP_NUM_THREADS when set (the setting numpy, scikit-learn
    and PyTorch read), else the CPUs this process may run on."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(configured) if configured.isdigit() and int(configured) > 0 else usable_cores()


def _count_within(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """For each point, how many points (itself included) lie within its radius in max-norm: scikit-learn's
    counting query, several times faster than scipy's ball query for this (measured in benchmarks/README.md;
    splitting it over threads did not make it faster on 2 cores)."""
    return KDTree(points, metric="chebyshev").query_radius(points, radius, count_only=True)


def ksg(x, y, k: int = 3, workers: int | None = None) -> float:
    """Kraskov-Stögbauer-Grassberger (2004) estimator 1: psi(k) + psi(n) - <psi(n_x + 1) + psi(n_y + 1)>, with k
    nearest neighbours in max-norm found by k-d trees, each column scaled to unit variance first.

    Biased low when x and y together span many dimensions, and the bias shrinks slowly with n; a smaller k
    trades bias for variance. In one dimension its error is mostly sampling noise. `workers`: threads for
    the joint neighbour search (default `default_workers()`). Measured numbers: benchmarks/README.md.
    """
    x, y = paired(x, y)
    n = len(x)
    require(k >= 1, f"ksg needs k >= 1, got k={k}")
    require(n > k, f"ksg needs more samples than neighbours: n={n} <= k={k}; pass more samples or a smaller k")
    require(workers is None or workers >= 1, f"ksg needs workers >= 1 (threads), got workers={workers}")
    x, y = standardized(x, "x"), standardized(y, "y")
    workers = workers or default_workers()
    joint = np.concatenate([x, y], axis=1)
    radius = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)[0][:, -1]
    radius = np.nextafter(radius, 0)  # strictly closer than the k-th joint neighbour
    n_x = _count_within(x, radius) - 1
    n_y = _count_within(y, radius) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))


MOVED_TO_ESTIMATE = ("mutual_information", "methods", "max_mutual_information", "ARRAY_METHODS")


def __getattr__(name: str):
    """The method registry moved to `dim_lightning.mi.estimate`; its names still import from here."""
    if name in MOVED_TO_ESTIMATE:
        from dim_lightning.mi import estimate

        return getattr(estimate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
