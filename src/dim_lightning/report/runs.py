"""What a report reads from disk: the jobs of a multirun dir (or the one run of a run dir), their overrides,
their final numbers (via the multirun summary's own reader) and their per-epoch CSV logs.

The CSV logs are read as files from others too: only real `csv/version_<n>/` folders and regular metrics.csv
files (no link followed), each at most `CSV_MAX_BYTES`, streamed, with at most `MAX_COLUMNS` columns. Over the
whole report (`LogBudget`: every job's log may be a hard link to the same file) at most `LOGS_MAX_BYTES` are read,
`MAX_LOG_ROWS` rows (with an epoch or not) parsed and `MAX_CURVE_POINTS` (epoch, value) points kept. A log that
breaks these, or holds a row that is not numbers, leaves its job's curves out with a status that says why.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from dim_lightning.errors import require
from dim_lightning.report.sweep_summary import DONE, JobFiles, read_job_files
from dim_lightning.run.run_dir import CSV_VERSION
from dim_lightning.utils.bounded_files import describe, open_capped

CSV_MAX_BYTES = 32 * 2**20  # a run of 100 epochs logging every 10 steps of 1,000: about 6 MiB
LOGS_MAX_BYTES = 256 * 2**20
MAX_LOG_ROWS = 4_000_000  # a real sweep: 100 jobs x 10,000 rows
MAX_COLUMNS = 1000
MAX_CURVE_POINTS = 2_000_000  # a real sweep: 100 jobs x 60 logged numbers x 100 epochs = 600,000

Curves = dict[str, list[tuple[float, float]]]


@dataclass
class Job:
    """One training (or evaluate) job: where it ran, what it overrode, its final numbers and its curves."""

    name: str
    path: Path
    status: str
    overrides: dict[str, str]
    metrics: dict[str, float]
    curves: Curves = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == DONE


def _override_pairs(lines: list[str]) -> dict[str, str]:
    pairs = (line.lstrip("+~").split("=", 1) for line in lines)
    return {key: value for key, value, *_ in ([*pair, ""] for pair in pairs)}


def _csv_logs(job_dir: Path) -> list[Path]:
    """csv/version_<n>/metrics.csv of real folders, in version order (a resumed run writes a new version); other
    names (version_x) are not the CSV logger's and are passed over."""
    folder = job_dir / "csv"
    if folder.is_symlink() or not folder.is_dir():
        return []
    versions = [(CSV_VERSION.fullmatch(path.name), path) for path in folder.iterdir()]
    found = [(int(match.group(1)), path) for match, path in versions if match and not path.is_symlink()]
    return [path / "metrics.csv" for _, path in sorted(found) if path.is_dir()]


def _curve_name(name: str) -> str | None:
    """The curve a column belongs to: logged numbers, not the epoch and step columns."""
    if name in ("epoch", "step") or name.endswith("_step"):
        return None
    return name.removesuffix("_epoch")


@dataclass
class LogBudget:
    """What the CSV logs of one report may still cost: bytes read, rows parsed, points kept."""

    bytes: int = field(default_factory=lambda: LOGS_MAX_BYTES)
    rows: int = field(default_factory=lambda: MAX_LOG_ROWS)
    points: int = field(default_factory=lambda: MAX_CURVE_POINTS)


def _columns(header: list[str]) -> tuple[int, list[tuple[int, str]]]:
    """The epoch column's index (-1: none) and (index, curve) of the columns that hold curves."""
    if len(header) > MAX_COLUMNS:
        raise ValueError(f"more than {MAX_COLUMNS} columns")
    epoch = header.index("epoch") if "epoch" in header else -1
    return epoch, [(i, curve) for i, name in enumerate(header) if (curve := _curve_name(name))]


def _read_log(path: Path, per_epoch: dict[str, dict[float, float]], budget: LogBudget) -> None:
    """Add the epoch rows of one metrics.csv to `per_epoch` (the last value logged in an epoch wins), charging
    `budget`. `ValueError` saying what is wrong with the log, or which of the report's bounds it would pass."""
    with open_capped(path, CSV_MAX_BYTES, follow_symlinks=False) as raw:
        size = os.fstat(raw.fileno()).st_size
        if size > budget.bytes:
            raise ValueError(f"the report's logs pass {LOGS_MAX_BYTES} bytes in all")
        budget.bytes -= size
        rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        epoch_column, curves = _columns(next(rows, []))
        for row in rows:
            budget.rows -= 1
            if budget.rows < 0:
                raise ValueError(f"more than {MAX_LOG_ROWS} rows in the report's logs")
            if raw.tell() > size:
                raise ValueError(f"grew past its {size} bytes while read")
            if not (0 <= epoch_column < len(row) and row[epoch_column]):
                continue
            try:
                epoch = float(row[epoch_column])
                cells = [(curve, float(row[i])) for i, curve in curves if i < len(row) and row[i]]
            except ValueError as error:
                raise ValueError(f"line {rows.line_num}: {error}") from error
            for curve, value in cells:
                values = per_epoch.setdefault(curve, {})
                budget.points -= epoch not in values
                values[epoch] = value
            if budget.points < 0:
                raise ValueError(f"more than {MAX_CURVE_POINTS} points in the report's logs")


def epoch_curves(job_dir: Path, budget: LogBudget | None = None) -> Curves:
    """Per-epoch values of every logged number, from each `csv/version_*/metrics.csv` in order (a resumed run
    writes a new version): {name: [(epoch, value), ...]}, one value per epoch (the last logged), numbers with two
    epochs or more. `ValueError` naming the log when one is not usable or would pass the report's `budget`."""
    per_epoch: dict[str, dict[float, float]] = {}
    budget = budget or LogBudget()
    for path in _csv_logs(job_dir):
        try:
            _read_log(path, per_epoch, budget)
        except (OSError, ValueError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
            problem = describe(error) if isinstance(error, OSError) else f"{path.relative_to(job_dir)}: {error}"
            raise ValueError(problem) from error
    return {name: sorted(values.items()) for name, values in per_epoch.items() if len(values) > 1}


def job_of(files: JobFiles, budget: LogBudget) -> Job:
    """A job read by `read_job_files`, with its curves (left out, with a status, when its logs are not usable)."""
    try:
        curves = epoch_curves(files.path, budget)
    except ValueError as error:
        curves = {}
        files.problems.append(f"curves left out: {error}")
    metrics = {k: v for k, v in files.results.metrics.items() if math.isfinite(v)}
    return Job(files.name, files.path, files.status, _override_pairs(files.overrides), metrics, curves)


def read_job_list(run_or_sweep_dir: str | Path) -> tuple[list[JobFiles], list[Job]]:
    """Every job under the dir (a Hydra multirun, Optuna, submitit or `dim-sweep` dir, or a single run dir): as
    `read_job_files` reads it (for the summary table) and with its curves."""
    root = Path(run_or_sweep_dir)
    require(
        root.is_dir(),
        f"{root} is not a folder; pass a run dir or a multirun (sweep) dir, e.g. outputs/train/multiruns/<time>",
    )
    files, budget = read_job_files(root), LogBudget()
    jobs = [job_of(job_files, budget) for job_files in files]
    require(
        bool(jobs),
        f"{root} holds no run: no .hydra/overrides.yaml in it or below; pass the dir of a run or of a multirun "
        "(the folder `python train.py -m ...` printed, e.g. outputs/train/multiruns/<time>)",
    )
    return files, jobs


def read_jobs(run_or_sweep_dir: str | Path) -> list[Job]:
    """Every job under the dir, with its curves (`read_job_list`)."""
    return read_job_list(run_or_sweep_dir)[1]


def swept_parameters(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs (or that some jobs lack), in the order they first
    appear; one pass over the overrides."""
    values: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for job in jobs:
        for key, value in job.overrides.items():
            values.setdefault(key, set()).add(value)
            count[key] = count.get(key, 0) + 1
    return [key for key in values if len(values[key]) > 1 or count[key] < len(jobs)]
