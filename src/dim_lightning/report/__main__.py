"""`dim-report DIR` (or `python -m dim_lightning.report DIR`): for a multirun dir (Hydra `-m`, Optuna, submitit,
`dim-sweep`) or a single run dir, write PNG plots and `report.md` into DIR: the summary table (best first by the
optimised metric), the metric against each swept parameter, per-epoch curves from each job's CSV log, and the
best job's overrides. Needs no W&B server."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dim_lightning.errors import require, user_errors_exit
from dim_lightning.eval.metrics import SELECTION_METRIC, headline
from dim_lightning.report.job_files import read_optimized_metric
from dim_lightning.report.plots import MAX_CURVE_JOBS, MAX_PANELS, plot_curves, plot_parameters
from dim_lightning.report.runs import Job, read_job_list, swept_parameters
from dim_lightning.report.sweep_summary import format_cell, markdown_table, write_summary, write_text


def optimized_metric(jobs: list[Job]) -> str:
    """The metric the jobs were run to optimise: `optimized_metric` in the first job's saved config (one sweep's
    jobs share it; parsing every job's would cost seconds each), else the default."""
    first = next((job.path for job in jobs if os.path.lexists(job.path / ".hydra" / "config.yaml")), None)
    return (read_optimized_metric(first) if first is not None else None) or SELECTION_METRIC


def _table(jobs: list[Job], parameters: list[str], metric: str) -> list[str]:
    """The report's table: a column per swept parameter (the first `MAX_PANELS`, as the figure) and the numbers."""
    parameters = parameters[:MAX_PANELS]
    columns = [*parameters, *dict.fromkeys([metric, *headline()])]
    rows = (
        [job.name, job.status, *(job.overrides.get(c) if c in parameters else job.metrics.get(c) for c in columns)]
        for job in jobs
    )
    return markdown_table(["job", "status", *columns], rows)


def write_report(run_or_sweep_dir: str | Path, metric: str | None = None) -> Path:
    """Write the plots and report.md into the dir; return report.md's path."""
    root = Path(run_or_sweep_dir)
    files, jobs = read_job_list(root)
    metric = metric or optimized_metric(jobs)
    order = {row["job"]: rank for rank, row in enumerate(write_summary(root, metric, files))}
    jobs.sort(key=lambda job: order.get(job.name, len(order)))
    finished = [job for job in jobs if metric in job.metrics]
    require(
        bool(finished) or any(job.curves for job in jobs),
        f"no job under {root} has results yet: no {metric} in a metrics.json/eval.json and no per-epoch CSV log "
        "(csv/version_*/metrics.csv, written by logger=csv); wait for a job to finish an epoch, or check its train.log",
    )
    parameters = swept_parameters(jobs)
    swept = set(parameters)
    labels = {
        job.name: " ".join(f"{k}={v}" for k, v in job.overrides.items() if k in swept) or job.name for job in jobs
    }
    lines = [
        f"# Report: {root.resolve().name}",
        "",
        f"{len(jobs)} job(s), {len(finished)} with {metric}; best first.",
        "",
    ]
    if len(parameters) > MAX_PANELS:
        lines += [f"The first {MAX_PANELS} of {len(parameters)} swept keys; summary.md has every job's overrides.", ""]
    lines += _table(jobs, parameters, metric)
    if parameters and finished:
        drawn = plot_parameters(jobs, parameters, metric, root / "report_parameters.png")
        figure = "![parameters](report_parameters.png)" if drawn else "Not drawn: the numbers span more than a float."
        lines += ["", f"## {metric} against each swept parameter", "", figure]
    if plot_curves(jobs, root / "report_curves.png", labels):
        logged = sum(bool(job.curves) for job in jobs)
        which = f" of the first {MAX_CURVE_JOBS} of {logged} jobs" if logged > MAX_CURVE_JOBS else ""
        lines += ["", f"## Per-epoch curves{which} (dashed: job not finished)", "", "![curves](report_curves.png)"]
    if finished:
        best = finished[0]
        overrides = " ".join(" ".join(f"{k}={v}" for k, v in best.overrides.items()).split()) or "(none)"
        lines += [
            "",
            "## Best job",
            "",
            f"`{format_cell(best.name)}`: {metric} = {best.metrics[metric]:.4f}",
            "",
            f"    {overrides}",
        ]
    report = root / "report.md"
    write_text(report, "\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dim-report", description=__doc__)
    parser.add_argument("dir", help="a multirun (sweep) dir or a single run dir")
    parser.add_argument("--metric", default=None, help="the metric to rank by (default: the runs' optimized_metric)")
    args = parser.parse_args(argv)
    with user_errors_exit("dim-report"):
        print(write_report(args.dir, args.metric))


if __name__ == "__main__":
    main()
