"""What a report reads from disk: the jobs of a multirun dir (or the one run of a run dir), their overrides,
their final numbers (via the multirun summary's own reader) and their per-epoch CSV logs.

The CSV logs are read as files from others too: only real `csv/version_<n>/` folders and regular metrics.csv
files (no link followed), each at most `CSV_MAX_BYTES`, streamed; at most `MAX_COLUMNS` columns and, over the
whole report, `MAX_CURVE_POINTS` (epoch, value) points are kept. A log that breaks these, or holds a row that is
not numbers, leaves its job's curves out with a status that says why.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from dim_lightning.errors import require
from dim_lightning.report.sweep_summary import DONE, read_job_files
from dim_lightning.utils.bounded_files import describe, open_capped

VERSION = re.compile(r"version_(\d{1,9})")
CSV_MAX_BYTES = 256 * 2**20
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
    versions = [(VERSION.fullmatch(path.name), path) for path in folder.iterdir()]
    found = [(int(match.group(1)), path) for match, path in versions if match and not path.is_symlink()]
    return [path / "metrics.csv" for _, path in sorted(found) if path.is_dir()]


def _curve_name(name: object, value: object) -> str | None:
    """The curve a cell of an epoch row belongs to: logged numbers, not step columns or empty cells."""
    if not (isinstance(name, str) and isinstance(value, str) and value) or name in ("epoch", "step"):
        return None
    return None if name.endswith("_step") else name.removesuffix("_epoch")


def _read_log(path: Path, per_epoch: dict[str, dict[float, float]], room: int) -> int:
    """Add the epoch rows of one metrics.csv to `per_epoch` (the last value logged in an epoch wins); return how
    many points it added. `ValueError` saying what is wrong with the log, or that it would pass `room`."""
    added = 0
    with open_capped(path, CSV_MAX_BYTES, follow_symlinks=False) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        if len(rows.fieldnames or ()) > MAX_COLUMNS:
            raise ValueError(f"more than {MAX_COLUMNS} columns")
        for row in rows:
            if not row.get("epoch"):
                continue
            try:
                epoch = float(row["epoch"])
                cells = [(curve, float(value)) for name, value in row.items() if (curve := _curve_name(name, value))]
            except ValueError as error:
                raise ValueError(f"line {rows.line_num}: {error}") from error
            for curve, value in cells:
                values = per_epoch.setdefault(curve, {})
                added += epoch not in values
                values[epoch] = value
            if added > room:
                raise ValueError(f"more than {MAX_CURVE_POINTS} points in the report's logs")
    return added


def epoch_curves(job_dir: Path, room: int = MAX_CURVE_POINTS) -> Curves:
    """Per-epoch values of every logged number, from each `csv/version_*/metrics.csv` in order (a resumed run
    writes a new version): {name: [(epoch, value), ...]}, one value per epoch (the last logged), numbers with two
    epochs or more. `ValueError` naming the log when one is not usable or its points would pass `room`."""
    per_epoch: dict[str, dict[float, float]] = {}
    for path in _csv_logs(job_dir):
        try:
            room -= _read_log(path, per_epoch, room)
        except (OSError, ValueError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
            problem = describe(error) if isinstance(error, OSError) else f"{path.relative_to(job_dir)}: {error}"
            raise ValueError(problem) from error
    return {name: sorted(values.items()) for name, values in per_epoch.items() if len(values) > 1}


def read_jobs(run_or_sweep_dir: str | Path) -> list[Job]:
    """Every job under the dir (a Hydra multirun, Optuna, submitit or `dim-sweep` dir, or a single run dir)."""
    root = Path(run_or_sweep_dir)
    require(
        root.is_dir(),
        f"{root} is not a folder; pass a run dir or a multirun (sweep) dir, e.g. outputs/train/multiruns/<time>",
    )
    jobs, room = [], MAX_CURVE_POINTS
    for files in read_job_files(root):
        try:
            curves = epoch_curves(files.path, room)
        except ValueError as error:
            curves = {}
            files.problems.append(f"curves left out: {error}")
        room -= sum(map(len, curves.values()))
        metrics = {k: v for k, v in files.results.metrics.items() if math.isfinite(v)}
        jobs.append(Job(files.name, files.path, files.status, _override_pairs(files.overrides), metrics, curves))
    require(
        bool(jobs),
        f"{root} holds no run: no .hydra/overrides.yaml in it or below; pass the dir of a run or of a multirun "
        "(the folder `python train.py -m ...` printed, e.g. outputs/train/multiruns/<time>)",
    )
    return jobs


def swept_parameters(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs, in the order they first appear."""
    keys = dict.fromkeys(key for job in jobs for key in job.overrides)
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
