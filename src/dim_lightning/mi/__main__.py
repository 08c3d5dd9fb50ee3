"""`python -m dim_lightning.mi X.npy Y.npy --method ksg [--bootstrap N]`: MI between two arrays as JSON."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dim_lightning.errors import DIMError, require, user_errors_exit
from dim_lightning.mi.arrays import methods, mutual_information


def load_array(path: str) -> np.ndarray:
    """A .npy file (memory-mapped first, so a header that declares more than the file holds is refused before
    anything is allocated), or a .csv of numbers (comma-separated, no header)."""
    file = Path(path)
    require(file.is_file(), f"{path} is not a file; pass the path of a .npy or .csv array")
    if file.suffix == ".npy":
        try:
            return np.array(np.load(file, allow_pickle=False, mmap_mode="r"))
        except (ValueError, OSError) as error:
            raise DIMError(f"{path} is not a .npy array of numbers that its bytes hold ({error})") from error
    require(file.suffix == ".csv", f"{path}: unsupported file type {file.suffix!r}; use .npy or .csv")
    try:
        return np.loadtxt(file, delimiter=",", ndmin=2)  # one line is one sample of d values
    except ValueError as error:
        raise DIMError(f"{path} is not a CSV of numbers ({error}); remove any header row and text columns") from error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dim_lightning.mi", description=__doc__)
    parser.add_argument("x", help="samples of X: .npy or .csv, shape (n,) or (n, d)")
    parser.add_argument("y", help="samples of Y, same number of rows")
    parser.add_argument("--method", default="ksg", choices=sorted(methods()))
    parser.add_argument("--k", type=int, default=3, help="neighbours for ksg")
    parser.add_argument("--bins", default="fd", help="histogram bins: a count or a numpy rule (fd, sturges, ...)")
    parser.add_argument("--miller-madow", action="store_true", help="bias correction for plugin/histogram")
    parser.add_argument("--steps", type=int, default=2000, help="training steps for neural methods")
    parser.add_argument(
        "--bootstrap", type=int, default=0, help="resamples for a 95%% interval of sampling variability (see ci95_nats)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def method_options(args: argparse.Namespace) -> dict:
    if args.method == "ksg":
        return {"k": args.k}
    if args.method in ("plugin", "histogram"):
        bins = int(args.bins) if args.bins.isdigit() else args.bins
        return {"miller_madow": args.miller_madow, **({"bins": bins} if args.method == "histogram" else {})}
    return {"steps": args.steps, "seed": args.seed}


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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with user_errors_exit("python -m dim_lightning.mi"):
        x, y = load_array(args.x), load_array(args.y)
        options = method_options(args)
        mi = mutual_information(x, y, method=args.method, **options)
        result = {"mi_nats": mi, "mi_bits": mi / math.log(2), "method": args.method, "n": len(x)}
        if args.bootstrap > 0:
            resamples = bootstrap_indices(len(x), args.bootstrap, args.method, args.seed)
            draws = [mutual_information(x[idx], y[idx], method=args.method, **options) for idx in resamples]
            result.update(bootstrap_interval(mi, draws, [len(idx) for idx in resamples], len(x)))
            result["bootstrap"] = args.bootstrap
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
