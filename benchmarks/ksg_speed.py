"""KSG speed, measured in one run: ours against NPEET's algorithm (gregversteeg/NPEET, the usual reference; it is
not on PyPI, so its `mi` is restated below) in 5 + 5 dimensions, and against scikit-learn's
`mutual_info_regression` in 1-d (it only does a 1-d y against each column of x). Prints JSON: best-of-3 seconds
and the estimates. `--n` sets the sample count (default 20,000), `--workers` our threads (default: the process's
thread setting, `dim_lightning.mi.arrays.default_workers`)."""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression
from sklearn.neighbors import KDTree

from dim_lightning.mi.arrays import default_workers, ksg


def npeet_mi(x: np.ndarray, y: np.ndarray, k: int = 3, seed: int = 0) -> float:
    """NPEET 1.0.1's `mi(x, y, k)` in nats: 1e-10 uniform jitter, max-norm k-d trees from scikit-learn, the
    k-th joint neighbour's distance less 1e-15 as the marginal radius."""
    rng = np.random.default_rng(seed)
    x, y = x + 1e-10 * rng.random(x.shape), y + 1e-10 * rng.random(y.shape)
    joint = np.hstack([x, y])
    distance = KDTree(joint, metric="chebyshev").query(joint, k=k + 1)[0][:, k] - 1e-15

    def mean_digamma(points: np.ndarray) -> float:
        return float(
            np.mean(digamma(KDTree(points, metric="chebyshev").query_radius(points, distance, count_only=True)))
        )

    return -mean_digamma(x) - mean_digamma(y) + float(digamma(k)) + float(digamma(len(x)))


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    """Best wall time of `repeats` calls, and the value."""
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n, rho = args.n, 0.75
    x5 = rng.standard_normal((n, 5))
    y5 = rho * x5 + math.sqrt(1 - rho**2) * rng.standard_normal((n, 5))
    x1, y1 = x5[:, 0], y5[:, 0]
    seconds_5d, mi_5d = timed(lambda: ksg(x5, y5, k=3, workers=args.workers))
    npeet_seconds, npeet_5d = timed(lambda: npeet_mi(x5, y5, k=3))
    seconds_1d, mi_1d = timed(lambda: ksg(x1, y1, k=3, workers=args.workers))
    sklearn_seconds, sklearn_1d = timed(
        lambda: float(mutual_info_regression(x1[:, None], y1, n_neighbors=3, random_state=0)[0])
    )
    result = {
        "n": n,
        "workers": args.workers or default_workers(),
        "ksg_5+5_seconds": seconds_5d,
        "npeet_5+5_seconds": npeet_seconds,
        "ksg_5+5_mi": mi_5d,
        "npeet_5+5_mi": npeet_5d,
        "true_5+5_mi": -2.5 * math.log(1 - rho**2),
        "ksg_1d_seconds": seconds_1d,
        "sklearn_1d_seconds": sklearn_seconds,
        "ksg_1d_mi": mi_1d,
        "sklearn_1d_mi": sklearn_1d,
        "true_1d_mi": -0.5 * math.log(1 - rho**2),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
