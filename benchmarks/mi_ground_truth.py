"""Every MI estimator against closed-form truth, as a JSON table, a Markdown table and a plot.

`--suite tasks` (the default): the 40 distributions of `dim_lightning.mi.ground_truth.benchmark_tasks` (Gaussians
over a dimension sweep 1 to 50 per side, dense, sparse and independent; Student-t with 1 to 3 dof; Gaussians seen
through invertible maps of each side) at --n rows (5,000), one sample per task shared by every method: each
method's estimate, error and seconds, and per method how many tasks it got within 10% or 0.05 nats.

`--suite classic`:
- correlated Gaussians: 1-d (rho grid; ksg and histogram), 5+5-d dense (correlated coordinates, dense
  cross-map) and sparse (coordinate-wise) correlation at n = 5,000 and 50,000 (ksg, k = 1 and 3);
- the Poole et al. (2019) staircase for the neural bounds: d = 20, true MI 2, 4, 6, 8, 10 nats, trained on
  fresh pairs (`neural_mi_sampled`, batch 64) and on a fixed sample of --n pairs (`mutual_information`, the
  cross-fitted estimate of `neural_mi` with its defaults; --steps caps its training);
- discrete channels with an exact pmf (plugin, with and without Miller-Madow).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # (torch's optimizers import it on first use: 3-5 s once per process, not timed)

from dim_lightning.mi import mutual_information, neural_mi_sampled
from dim_lightning.mi.bounds import BOUNDS
from dim_lightning.mi.ground_truth import benchmark_tasks, discrete_channel, linear_gaussian, pmf_mi, staircase

# Label -> (method, options) for the task suite; "+copula": transform="copula" first.
TASK_METHODS = {
    "ksg": ("ksg", {}),
    "gaussian": ("gaussian", {}),
    "ksg+copula": ("ksg", {"transform": "copula"}),
    "gaussian+copula": ("gaussian", {"transform": "copula"}),
    "infonce+copula": ("infonce", {"transform": "copula"}),
    "auto": ("auto", {}),
}


def within(estimate: float, truth: float) -> bool:
    """The acceptance tolerance: within 10% of the truth or 0.05 nats."""
    return abs(estimate - truth) <= max(0.1 * abs(truth), 0.05)


def task_rows(n: int, labels: list[str]) -> list[dict]:
    """Every method of `labels` on one sample of n rows of each benchmark task."""
    out = []
    for number, task in enumerate(benchmark_tasks()):
        x, y = task.sample(n, np.random.default_rng(1000 + number))
        for label in labels:
            method, options = TASK_METHODS[label]
            start = time.perf_counter()
            estimate = mutual_information(x, y, method=method, **options)
            seconds = time.perf_counter() - start
            row = {"case": task.name, "family": task.family, "dims": task.dx + task.dy, "true_mi": task.mi}
            out.append(
                row | {"method": label, "estimate": estimate, "seconds": seconds, "ok": within(estimate, task.mi)}
            )
            print(f"{task.name:34s} {label:16s} true {task.mi:6.3f} est {estimate:7.3f} {seconds:6.1f} s", flush=True)
    return out


def task_summary(results: list[dict]) -> dict:
    """Per method: tasks within tolerance, tasks, largest seconds."""
    summary = {}
    for label in dict.fromkeys(r["method"] for r in results):
        mine = [r for r in results if r["method"] == label]
        summary[label] = {
            "within": sum(r["ok"] for r in mine),
            "tasks": len(mine),
            "max_seconds": max(r["seconds"] for r in mine),
        }
    return summary


def task_table(results: list[dict]) -> list[str]:
    """One row per task: the truth, then each method's signed error (nats) and seconds (* = within tolerance)."""
    labels = list(dict.fromkeys(r["method"] for r in results))
    table = ["| task | true MI | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels)]
    for case in dict.fromkeys(r["case"] for r in results):
        cells = {r["method"]: r for r in results if r["case"] == case}
        first = cells[labels[0]]
        row = [
            f"{c['estimate'] - c['true_mi']:+.3f}{'*' if c['ok'] else ''} ({c['seconds']:.1f} s)"
            for c in map(cells.get, labels)
        ]
        table.append(f"| {case} | {first['true_mi']:.3f} | " + " | ".join(row) + " |")
    return table


def classic_rows(n_neural: int, steps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []

    def record(case: str, truth: float, label: str, estimator, *args, **options) -> None:
        start = time.perf_counter()
        estimate = estimator(*args, **options)
        seconds = time.perf_counter() - start
        out.append({"case": case, "true_mi": truth, "method": label, "estimate": estimate, "seconds": seconds})
        error = (estimate - truth) / truth
        line = f"{case:34s} {label:10s} true {truth:6.3f}  est {estimate:7.3f} {error:+7.1%}  {seconds:6.1f} s"
        print(line, flush=True)

    for rho in (0.25, 0.5, 0.75, 0.9):
        x = rng.standard_normal(5000)
        y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(5000)
        for method in ("ksg", "histogram"):
            record(f"gaussian 1-d rho={rho}", -0.5 * math.log(1 - rho**2), method, mutual_information, x, y, method)
    dense_cross, dense_sx = rng.normal(scale=0.4, size=(5, 5)), 0.5 * np.eye(5) + 0.5
    for n in (5_000, 50_000):
        for name, cross, sx in (("dense", dense_cross, dense_sx), ("sparse", 0.6 * np.eye(5), np.eye(5))):
            x, y, truth = linear_gaussian(cross, sx, n, rng)
            for k in (1, 3):
                record(f"gaussian 5+5 {name} n={n}", truth, f"ksg k={k}", mutual_information, x, y, "ksg", k=k)
    for mi in (2, 4, 6, 8, 10):
        for method in BOUNDS:
            sample = staircase(mi, rng)
            record(f"staircase d=20 mi={mi} fresh", mi, method, neural_mi_sampled, sample, method, steps=steps)
            x, y = sample(n_neural)
            case = f"staircase d=20 mi={mi} fixed n={n_neural}"
            record(case, mi, method, mutual_information, x, y, method, steps=steps)
    pmf = np.array([[0.20, 0.05, 0.00], [0.05, 0.20, 0.05], [0.00, 0.05, 0.20], [0.10, 0.05, 0.05]])
    for n in (200, 2000, 20000):
        x, y = discrete_channel(pmf, n, rng)
        for label, correct in (("plugin", False), ("plugin+mm", True)):
            record(f"channel 4x3 n={n}", pmf_mi(pmf), label, mutual_information, x, y, "plugin", miller_madow=correct)
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
    parser.add_argument("--suite", choices=["tasks", "classic"], default="tasks")
    parser.add_argument("--n", type=int, default=None, help="rows per task (5,000) / per staircase level (20,000)")
    parser.add_argument("--methods", default=",".join(TASK_METHODS), help="task suite: comma-separated labels")
    parser.add_argument("--steps", type=int, default=4000, help="classic: critic training steps per neural estimate")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the cores you really have)")
    parser.add_argument("--out", default="outputs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.suite == "tasks":
        results = task_rows(args.n or 5000, args.methods.split(","))
        (out / "mi_tasks.md").write_text("\n".join(task_table(results)) + "\n")
        (out / "mi_tasks.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({"summary": task_summary(results), "table": str(out / "mi_tasks.md")}))
        return
    results = classic_rows(args.n or 20000, args.steps)
    table = ["| case | method | true MI | estimate | rel. error | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    table += [
        f"| {r['case']} | {r['method']} | {r['true_mi']:.3f} | {r['estimate']:.3f} | "
        f"{(r['estimate'] - r['true_mi']) / r['true_mi']:+.1%} | {r['seconds']:.1f} |"
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
