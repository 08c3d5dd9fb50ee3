"""One table per multirun: `summary.csv` and `summary.md` in the sweep dir, one row per job (its overrides and
headline numbers, `dim_lightning.eval.metrics.headline()`), best first by the optimised metric on the selection
split (`*/val_acc`); the official held-out split's `*/test_acc` are columns beside it, never the sort key.

The jobs' files come from others (`job_files`: read bounded, no link followed; an unusable job stays in the table
with a status that says why), so the tables are written as new files (`write_new_file`, never through a link)
and their text cells escaped (`format_cell`, `csv_cell`: no Markdown link, HTML or extra column, no spreadsheet
formula). `MultirunSummary` is a Hydra callback (conf/hydra/default.yaml), so every multirun writes the table
whatever its sweeper or launcher; `python -m dim_lightning.sweep` calls `write_summary` on its own sweep dir."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dim_lightning.errors import DIMError
from dim_lightning.eval.metrics import SELECTION_METRIC, headline
from dim_lightning.report.job_files import JobFilesBudget, JobResults, job_dirs, read_overrides, read_results
from dim_lightning.utils.atomic import atomic_write

log = logging.getLogger(__name__)

DONE = "done"
NO_RESULTS = "no metrics.json or eval.json"


@dataclass
class JobFiles:
    """What one job folder holds: its overrides and final numbers, and what is wrong with its files."""

    path: Path
    name: str
    overrides: list[str]
    results: JobResults
    problems: list[str]

    @property
    def status(self) -> str:
        return "; ".join(self.problems) or (DONE if self.results.metrics else NO_RESULTS)


def read_job_files(sweep_dir: Path) -> list[JobFiles]:
    """Every job folder under `sweep_dir` (`job_files.job_dirs`) with its overrides and results, all result files
    and overrides read from one `JobFilesBudget`. A training job writes metrics.json; an evaluate job (python -m
    dim_lightning.evaluate -m ...) eval.json."""
    jobs, budget = [], JobFilesBudget()
    for job_dir in job_dirs(sweep_dir):
        overrides, problem = read_overrides(job_dir, budget)
        results = read_results(job_dir, budget)
        problems = [p for p in (problem, results.problem) if p]
        jobs.append(JobFiles(job_dir, str(job_dir.relative_to(sweep_dir)), overrides, results, problems))
    return jobs


def job_rows(jobs: list[JobFiles]) -> list[dict[str, Any]]:
    """One row per job. The overrides column keeps what varies between jobs (the swept values); overrides every
    job shares are left out."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    return [
        {
            **job.results.metrics,
            "job": job.name,
            "overrides": " ".join(o for o in job.overrides if o not in shared),
            "status": job.status,
        }
        for job in jobs
    ]


def _sort_key(metric: str):
    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        missing = isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        return (1, 0.0) if missing else (0, -float(value))

    return key


MARKDOWN_ESCAPES = str.maketrans({c: "\\" + c for c in "\\|<[]"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def format_cell(value: Any) -> str:
    """A Markdown table cell: numbers rounded; text on one line, its `\\ | < [ ]` escaped (job names, overrides
    and statuses come from the sweep dir's files: no link, HTML or extra column)."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else " ".join(str(value).split()).translate(MARKDOWN_ESCAPES)


def csv_cell(value: Any) -> Any:
    """A summary.csv cell: text that a spreadsheet would take for a formula gets a leading `'`; numbers stay."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """The lines of a Markdown table, cells (and header cells: a report's are override keys) by `format_cell`."""
    lines = ["| " + " | ".join(map(format_cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(format_cell, row)) + " |" for row in rows]


def write_new_file(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write `path` as a new file (`atomic_write`: a link there is replaced, not followed); an error names it."""
    try:
        atomic_write(path, write)
    except OSError as error:
        raise DIMError(f"cannot write {path} ({error}); remove what is in its place or pass another dir") from error


def write_text(path: Path, text: str) -> None:
    write_new_file(path, lambda file: file.write(text.encode()))


def write_summary(
    sweep_dir: str | Path, metric: str = SELECTION_METRIC, jobs: list[JobFiles] | None = None
) -> list[dict[str, Any]]:
    """Write summary.csv / summary.md for the jobs under `sweep_dir` (`jobs`: those already read by
    `read_job_files`, else read here); return the rows, best first."""
    sweep_dir = Path(sweep_dir)
    rows = sorted(job_rows(read_job_files(sweep_dir) if jobs is None else jobs), key=_sort_key(metric))
    columns = ["job", "overrides", "status", *dict.fromkeys([metric, *headline()])]
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(columns)
    writer.writerows([csv_cell(row.get(column)) for column in columns] for row in rows)
    write_text(sweep_dir / "summary.csv", table.getvalue())
    lines = [
        f"# Sweep summary: {len(rows)} jobs, best {metric} first",
        "",
        "val = the model-selection split carved from the training images (sorted on); test = the data set's "
        "official held-out split (reported, never optimized).",
        "",
        *markdown_table(columns, ([row.get(c) for c in columns] for row in rows)),
    ]
    write_text(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    log.info(f"Sweep summary of {len(rows)} jobs: {sweep_dir / 'summary.md'}")
    return rows


class MultirunSummary(Callback):
    """Hydra callback: at the end of a multirun, tabulate every job of the sweep dir."""

    def __init__(self, metric: str = SELECTION_METRIC) -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(config.hydra.sweep.dir, self.metric)
