"""One table per multirun: `summary.csv` and `summary.md` in the sweep dir, one row per job (its overrides and
headline numbers from its metrics.json, `dim_lightning.eval.metrics.headline()`), best first by the optimised
metric (higher is better). The order reads the selection split (`*/val_acc`, carved from the training images);
the official held-out split's numbers (`*/test_acc`) are columns beside it, never the sort key.

`MultirunSummary` is a Hydra callback (`hydra.callbacks` in conf/hydra/default.yaml), so every multirun writes
the table whatever its sweeper (basic, Optuna) or launcher (local, submitit); the offline W&B sweep runner
(`python -m dim_lightning.sweep`) calls `write_summary` on its own sweep dir.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dim_lightning.eval.metrics import SELECTION_METRIC, headline

log = logging.getLogger(__name__)

RESULT_FILES = ("metrics.json", "eval.json")


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job dir under `sweep_dir` (a dir holding `.hydra/overrides.yaml`). The overrides column
    keeps what varies between jobs (the swept values); overrides every job shares are left out."""
    jobs = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        # a training job writes metrics.json; an evaluate job (python -m dim_lightning.evaluate -m ...) eval.json
        found = [job_dir / name for name in RESULT_FILES if (job_dir / name).is_file()]
        metrics = json.loads(found[0].read_text()) if found else {}
        jobs.append((job_dir, yaml.safe_load(overrides_file.read_text()) or [], metrics))
    shared = set.intersection(*(set(o) for _, o, _ in jobs)) if len(jobs) > 1 else set()
    return [
        {
            "job": str(job_dir.relative_to(sweep_dir)),
            "overrides": " ".join(o for o in overrides if o not in shared),
            "status": "done" if metrics else "no metrics.json or eval.json",
            **metrics,
        }
        for job_dir, overrides, metrics in jobs
    ]


def _sort_key(metric: str):
    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        missing = value is None or not math.isfinite(float(value))
        return (1, 0.0) if missing else (0, -float(value))

    return key


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """The lines of a Markdown table, cells written by `format_cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(format_cell, row)) + " |" for row in rows]


def write_summary(sweep_dir: str | Path, metric: str = SELECTION_METRIC) -> list[dict[str, Any]]:
    """Write summary.csv / summary.md for the jobs under `sweep_dir`; return the rows, best first."""
    sweep_dir = Path(sweep_dir)
    rows = sorted(job_rows(sweep_dir), key=_sort_key(metric))
    columns = ["job", "overrides", "status", *dict.fromkeys([metric, *headline()])]
    with (sweep_dir / "summary.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Sweep summary: {len(rows)} jobs, best {metric} first",
        "",
        "val = the model-selection split carved from the training images (sorted on); test = the data set's "
        "official held-out split (reported, never optimized).",
        "",
        *markdown_table(columns, ([row.get(c) for c in columns] for row in rows)),
    ]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    log.info(f"Sweep summary of {len(rows)} jobs: {sweep_dir / 'summary.md'}")
    return rows


class MultirunSummary(Callback):
    """Hydra callback: at the end of a multirun, tabulate every job of the sweep dir."""

    def __init__(self, metric: str = SELECTION_METRIC) -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(config.hydra.sweep.dir, self.metric)
