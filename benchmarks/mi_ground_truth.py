"""Every MI estimator against closed-form truth, as a JSON table, a Markdown table and a plot.

- correlated Gaussians: 1-d (rho grid), 5+5-d dense (correlated coordinates, dense cross-map) and sparse
  (coordinate-wise) correlation; methods ksg and histogram;
- the Poole et al. (2019) staircase for the neural bounds: d = 20, true MI 2, 4, 6, 8, 10 nats, batch 64,
  n samples per level (default 20,000; --n to change);
- discrete channels with an exact pmf (plugin, with and without Miller-Madow).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from dim_lightning.mi import mutual_information

NEURAL = ("infonce", "nwj", "dv", "smile", "jsd")


def gaussian_pair(cross: np.ndarray, sx: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray, float]:
    """x ~ N(0, sx), y = cross x + unit noise; exact MI = 0.5 log det(cross sx cross^T + I)."""
    x = rng.multivariate_normal(np.zeros(len(sx)), sx, size=n)
    y = x @ cross.T + rng.standard_normal((n, cross.shape[0]))
    return x, y, 0.5 * np.linalg.slogdet(cross @ sx @ cross.T + np.eye(cross.shape[0]))[1]


def staircase(mi: float, n: int, rng, dim: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))
    x = rng.standard_normal((n, dim))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))


def channel_samples(pmf: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray, float]:
    cells = rng.choice(pmf.size, size=n, p=pmf.ravel())
    px, py = pmf.sum(1, keepdims=True), pmf.sum(0, keepdims=True)
    nz = pmf > 0
    return cells // pmf.shape[1], cells % pmf.shape[1], float((pmf[nz] * np.log(pmf[nz] / (px @ py)[nz])).sum())


def rows(n_neural: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []

    def record(case: str, truth: float, method: str, x, y, **options) -> None:
        start = time.perf_counter()
        estimate = mutual_information(x, y, method=method, **options)
        out.append(
            {
                "case": case,
                "true_mi": truth,
                "method": method,
                "estimate": estimate,
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"{case:28s} {method:10s} true {truth:6.3f}  est {estimate:7.3f}", flush=True)

    for rho in (0.25, 0.5, 0.75, 0.9):
        x = rng.standard_normal(5000)
        y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(5000)
        for method in ("ksg", "histogram"):
            record(f"gaussian 1-d rho={rho}", -0.5 * math.log(1 - rho**2), method, x, y)
    dense = gaussian_pair(rng.normal(scale=0.4, size=(5, 5)), 0.5 * np.eye(5) + 0.5, 5000, rng)
    sparse = gaussian_pair(0.6 * np.eye(5), np.eye(5), 5000, rng)
    for name, (x, y, truth) in (("gaussian 5+5 dense", dense), ("gaussian 5+5 sparse", sparse)):
        record(name, truth, "ksg", x, y)
    for mi in (2, 4, 6, 8, 10):
        x, y = staircase(mi, n_neural, rng)
        for method in NEURAL:
            record(f"staircase d=20 mi={mi}", float(mi), method, x, y, batch_size=64)
    pmf = np.array([[0.20, 0.05, 0.00], [0.05, 0.20, 0.05], [0.00, 0.05, 0.20], [0.10, 0.05, 0.05]])
    for n in (200, 2000, 20000):
        x, y, truth = channel_samples(pmf, n, rng)
        record(f"channel 4x3 n={n}", truth, "plugin", x, y)
        out.append(
            {**out[-1], "method": "plugin+mm", "estimate": mutual_information(x, y, method="plugin", miller_madow=True)}
        )
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    for method in sorted({r["method"] for r in results}):
        points = [(r["true_mi"], r["estimate"]) for r in results if r["method"] == method]
        ax.scatter(*zip(*points, strict=True), label=method, s=18)
    top = max(r["true_mi"] for r in results)
    ax.plot([0, top], [0, top], "k--", lw=1, label="truth")
    ax.set(xlabel="true MI (nats)", ylabel="estimate (nats)", title="MI estimators vs ground truth")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="samples per staircase level")
    parser.add_argument("--out", default="outputs/benchmarks")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = rows(args.n)
    table = ["| case | method | true MI | estimate | rel. error |", "| --- | --- | --- | --- | --- |"]
    table += [
        f"| {r['case']} | {r['method']} | {r['true_mi']:.3f} | {r['estimate']:.3f} | "
        f"{(r['estimate'] - r['true_mi']) / r['true_mi']:+.1%} |"
        for r in results
    ]
    (out / "mi_ground_truth.md").write_text("\n".join(table) + "\n")
    (out / "mi_ground_truth.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "mi_ground_truth.png")
    print(
        json.dumps(
            {"rows": len(results), "table": str(out / "mi_ground_truth.md"), "plot": str(out / "mi_ground_truth.png")}
        )
    )


if __name__ == "__main__":
    main()
