"""What a report reads from disk: the jobs of a multirun dir (or the one run of a run dir), their overrides,
their final numbers (via the multirun summary's own reader) and their per-epoch CSV logs."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dim_lightning.errors import require
from dim_lightning.report.sweep_summary import job_rows

DONE = "done"


@dataclass
class Job:
    """One training (or evaluate) job: where it ran, what it overrode, its final numbers and its curves."""

    name: str
    path: Path
    status: str
    overrides: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == DONE


def _override_pairs(job_dir: Path) -> dict[str, str]:
    lines = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (str(line).lstrip("+~").split("=", 1) for line in lines)
    return {key: value for key, value, *_ in ([*pair, ""] for pair in pairs)}


def epoch_curves(job_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch values of every logged number, from each `csv/version_*/metrics.csv` in order (a resumed run
    writes a new version): {name: [(epoch, value), ...]}, one value per epoch (the last logged)."""
    per_epoch: dict[str, dict[float, float]] = {}
    versions = sorted(job_dir.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for metrics_file in versions:
        with metrics_file.open(newline="") as file:
            for row in csv.DictReader(file):
                epoch = row.get("epoch")
                if not epoch:
                    continue
                for name, value in row.items():
                    if value and name not in ("epoch", "step") and not name.endswith("_step"):
                        per_epoch.setdefault(name.removesuffix("_epoch"), {})[float(epoch)] = float(value)
    return {name: sorted(values.items()) for name, values in per_epoch.items() if len(values) > 1}


def read_jobs(run_or_sweep_dir: str | Path) -> list[Job]:
    """Every job under the dir (a Hydra multirun, Optuna, submitit or `dim-sweep` dir, or a single run dir)."""
    root = Path(run_or_sweep_dir)
    require(
        root.is_dir(),
        f"{root} is not a folder; pass a run dir or a multirun (sweep) dir, e.g. outputs/train/multiruns/<time>",
    )
    jobs = []
    for row in job_rows(root):
        path = root / row["job"]
        metrics = {k: float(v) for k, v in row.items() if k not in ("job", "overrides", "status") and _is_number(v)}
        jobs.append(Job(row["job"], path, row["status"], _override_pairs(path), metrics, epoch_curves(path)))
    require(
        bool(jobs),
        f"{root} holds no run: no .hydra/overrides.yaml in it or below; pass the dir of a run or of a multirun "
        "(the folder `python train.py -m ...` printed, e.g. outputs/train/multiruns/<time>)",
    )
    return jobs


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def swept_parameters(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs, in the order they first appear."""
    keys = dict.fromkeys(key for job in jobs for key in job.overrides)
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
