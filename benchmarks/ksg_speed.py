"""KSG speed: n = 10,000 with d = 5 + 5, and the 1-d case against scikit-learn's mutual_info_regression
(which only does 1-d y against each column of x). Prints JSON with seconds and estimates."""

from __future__ import annotations

import json
import math
import time

import numpy as np
from sklearn.feature_selection import mutual_info_regression

from dim_lightning.mi import mutual_information


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    """Best wall time of `repeats` calls, and the value."""
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> dict:
    rng = np.random.default_rng(0)
    n, rho = 10_000, 0.75
    x5 = rng.standard_normal((n, 5))
    y5 = rho * x5 + math.sqrt(1 - rho**2) * rng.standard_normal((n, 5))
    seconds_5d, mi_5d = timed(lambda: mutual_information(x5, y5, method="ksg", k=3))
    x1, y1 = x5[:, 0], y5[:, 0]
    seconds_ours, mi_ours = timed(lambda: mutual_information(x1, y1, method="ksg", k=3))
    seconds_sklearn, mi_sklearn = timed(
        lambda: float(mutual_info_regression(x1[:, None], y1, n_neighbors=3, random_state=0)[0])
    )
    result = {
        "n": n,
        "ksg_5+5_seconds": seconds_5d,
        "ksg_5+5_mi": mi_5d,
        "ksg_5+5_true_mi": -2.5 * math.log(1 - rho**2),
        "ksg_1d_seconds": seconds_ours,
        "ksg_1d_mi": mi_ours,
        "sklearn_1d_seconds": seconds_sklearn,
        "sklearn_1d_mi": mi_sklearn,
        "true_1d_mi": -0.5 * math.log(1 - rho**2),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
