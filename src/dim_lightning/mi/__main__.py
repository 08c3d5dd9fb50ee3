"""`python -m dim_lightning.mi X.npy Y.npy [--method auto] [--bootstrap N]`: MI between two arrays as JSON on stdout,
progress of a neural estimate on stderr."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dim_lightning.errors import DIMError, require, user_errors_exit
from dim_lightning.mi.auto import auto_mi
from dim_lightning.mi.bootstrap import bootstrap_indices, bootstrap_interval
from dim_lightning.mi.estimate import methods, mutual_information


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
    parser.add_argument(
        "--method", default="auto", choices=sorted(methods()), help="auto (default) is the recommendation"
    )
    parser.add_argument(
        "--transform", choices=["copula"], help="map each column to normal scores first (auto always does)"
    )
    parser.add_argument("--k", type=int, default=3, help="neighbours for ksg (and auto's ksg)")
    parser.add_argument("--bins", default="fd", help="histogram bins: a count or a numpy rule (fd, sturges, ...)")
    parser.add_argument("--miller-madow", action="store_true", help="bias correction for plugin/histogram")
    parser.add_argument("--steps", type=int, default=2000, help="training steps for neural methods")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help=f"resamples for a 95%% interval of sampling variability (see ci95_nats); 0 for none; default 0, "
        f"{AUTO_BOOTSTRAP} for auto",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


AUTO_BOOTSTRAP = 50


def method_options(args: argparse.Namespace) -> dict:
    if args.method == "ksg":
        return {"k": args.k}
    if args.method in ("plugin", "histogram"):
        bins = int(args.bins) if args.bins.isdigit() else args.bins
        return {"miller_madow": args.miller_madow, **({"bins": bins} if args.method == "histogram" else {})}
    if args.method == "gaussian":
        return {}
    return {"steps": args.steps, "seed": args.seed, "progress": not args.no_progress}


def auto_result(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict:
    """`auto_mi`'s estimate, choice and interval, with the CLI's other fields."""
    resamples = AUTO_BOOTSTRAP if args.bootstrap is None else args.bootstrap
    found = auto_mi(x, y, bootstrap=resamples, seed=args.seed, k=args.k, progress=not args.no_progress)
    return {"mi_nats": found.mi_nats, "mi_bits": found.mi_nats / math.log(2), "method": "auto", "n": len(x)} | {
        key: value for key, value in found.as_dict().items() if key != "mi_nats"
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with user_errors_exit("python -m dim_lightning.mi"):
        x, y = load_array(args.x), load_array(args.y)
        result = auto_result(x, y, args) if args.method == "auto" else method_result(x, y, args)
    print(json.dumps(result))
    return result


def method_result(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict:
    """One method's estimate, with a bootstrap interval if asked."""
    options = {"transform": args.transform, **method_options(args)}
    mi = mutual_information(x, y, method=args.method, **options)
    result = {"mi_nats": mi, "mi_bits": mi / math.log(2), "method": args.method, "n": len(x)}
    if args.bootstrap:
        resamples = bootstrap_indices(len(x), args.bootstrap, args.method, args.seed)
        options = {**options, "progress": False} if "progress" in options else options
        draws = [mutual_information(x[idx], y[idx], method=args.method, **options) for idx in resamples]
        result.update(bootstrap_interval(mi, draws, [len(idx) for idx in resamples], len(x)))
        result["bootstrap"] = args.bootstrap
    return result


if __name__ == "__main__":
    main()
