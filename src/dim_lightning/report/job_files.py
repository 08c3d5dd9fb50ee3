"""The job folders of a sweep (or run) dir and the small files each holds, read as files from others: a sweep dir
can be copied from someone else, so reading one never follows a symbolic link it holds (a linked job folder is
not walked, a linked file is not read), and costs memory and time bounded by what real files need: a walk of at
most `MAX_ENTRIES` entries and `MAX_DEPTH` folders down, each file read up to its cap and parsed as plain data,
and one `JobFilesBudget` for all the jobs' files together (every job's file may be a hard link to the same one,
so per-file caps alone would multiply by the number of jobs). A file that is missing, too large, a link, or not
what a run writes leaves its job in the table with a status that says so; a walk over the limits is a `DIMError`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dim_lightning.errors import require
from dim_lightning.eval.run_id import RUN_ID_KEY, is_run_id
from dim_lightning.utils.bounded_files import describe, read_capped
from dim_lightning.utils.plain_yaml import load_plain_yaml

RESULT_FILES = ("metrics.json", "eval.json")
MAX_ENTRIES = 1_000_000
MAX_DEPTH = 8
RESULTS_MAX_BYTES = 64 * 2**10  # a run's metrics.json: a few KiB, under 200 numbers
MAX_RESULT_KEYS = 1000
REPORT_RESULTS_MAX_BYTES = 64 * 2**20  # all jobs: 1,000 jobs of real files take about 5 MiB
REPORT_MAX_NUMBERS = 1_000_000  # all jobs: kept in memory, about 150 bytes each
OVERRIDES_MAX_BYTES = 16 * 2**10  # a real overrides.yaml: a few hundred bytes
REPORT_OVERRIDES_MAX_BYTES = 4 * 2**20  # all jobs: parsing YAML costs about 3 s a MiB
CONFIG_MAX_BYTES = 64 * 2**10  # a real config.yaml: about 4 KiB
ROW_FIELDS = ("job", "overrides", "status")


@dataclass
class JobFilesBudget:
    """What the result and override files of one sweep dir may still cost: bytes read and numbers kept."""

    bytes: int = field(default_factory=lambda: REPORT_RESULTS_MAX_BYTES)
    numbers: int = field(default_factory=lambda: REPORT_MAX_NUMBERS)
    overrides_bytes: int = field(default_factory=lambda: REPORT_OVERRIDES_MAX_BYTES)

    def spent(self) -> str | None:
        """Why no further result file is read, or None."""
        if self.bytes <= 0 or self.numbers <= 0:
            return (
                f"left out: the sweep dir's result files pass {REPORT_RESULTS_MAX_BYTES} bytes or "
                f"{REPORT_MAX_NUMBERS} numbers in all; report a part of it (a sub-dir)"
            )
        return None


@dataclass
class JobResults:
    """A job's final numbers (finite or not, numbers only) and, if its result file is not usable, why."""

    metrics: dict[str, float] = field(default_factory=dict)
    problem: str | None = None


def job_dirs(root: Path) -> list[Path]:
    """Every folder at or under `root` (at most `MAX_DEPTH` down) that holds a real `.hydra` folder, sorted;
    symbolic links are neither walked nor taken for a job."""
    found, stack, seen = [], [(root, 0)], 0
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as entries:
                folders = []
                for entry in entries:
                    seen += 1
                    require(
                        seen <= MAX_ENTRIES,
                        f"{root} holds more than {MAX_ENTRIES} files and folders; pass the dir of one run or of "
                        "one multirun",
                    )
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
        except OSError:
            continue  # not readable: no job there
        if ".hydra" in folders:
            found.append(folder)
        if depth < MAX_DEPTH:
            stack += [(folder / name, depth + 1) for name in folders if name != ".hydra"]
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def _read(path: Path, limit: int) -> bytes:
    """The file's bytes; `ValueError` saying what is wrong (missing, a link, not a file, too large)."""
    try:
        return read_capped(path, limit, follow_symlinks=False)
    except OSError as error:
        raise ValueError(describe(error)) from error


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int of hundreds of digits
        return None


def _numbers(results: dict[Any, Any]) -> tuple[dict[str, float], list[Any]]:
    """The numbers of a result file, and the keys left out: not a number, or a `run_id` that is not one."""
    numbers = {key: _number(value) for key, value in results.items() if key not in (*ROW_FIELDS, RUN_ID_KEY)}
    metrics = {key: value for key, value in numbers.items() if value is not None}
    run_id = [RUN_ID_KEY] if is_run_id(results.get(RUN_ID_KEY)) else []
    return metrics, [key for key in results if key not in metrics and key not in run_id]


def read_results(job_dir: Path, budget: JobFilesBudget | None = None) -> JobResults:
    """The job's metrics.json (a training run) or eval.json (an evaluate run): a mapping of at most
    `MAX_RESULT_KEYS` names to numbers (and the run's id), parsed as plain JSON. No file: no metrics and no
    problem (the job has not finished). With a `budget`, it is charged, and the file is not read once it is
    spent."""
    found = [job_dir / name for name in RESULT_FILES if os.path.lexists(job_dir / name)]
    if not found:
        return JobResults()
    name, budget = found[0].name, budget or JobFilesBudget()
    if budget.spent():
        return JobResults(problem=f"{name}: {budget.spent()}")
    try:
        data = _read(found[0], RESULTS_MAX_BYTES)
        budget.bytes -= len(data)
        results = json.loads(data)
    except (ValueError, RecursionError) as error:
        return JobResults(problem=f"{name}: {error}")
    if not isinstance(results, dict):
        return JobResults(problem=f"{name} holds a {type(results).__name__}, not a mapping of numbers")
    if len(results) > MAX_RESULT_KEYS:
        return JobResults(problem=f"{name} holds {len(results)} keys, more than the {MAX_RESULT_KEYS} a run writes")
    metrics, dropped = _numbers(results)
    budget.numbers -= len(metrics)
    problem = f"{name}: left out, not a number: {', '.join(map(str, dropped[:3]))}" if dropped else None
    return JobResults(metrics, problem)


def read_overrides(job_dir: Path, budget: JobFilesBudget | None = None) -> tuple[list[str], str | None]:
    """The job's `.hydra/overrides.yaml` (a list of key=value strings), and why it is unusable if it is. With a
    `budget`, it is charged, and the file is not read once it is spent."""
    path, budget = job_dir / ".hydra" / "overrides.yaml", budget or JobFilesBudget()
    if budget.overrides_bytes <= 0:
        return [], (
            f".hydra/overrides.yaml: left out: the sweep dir's overrides pass {REPORT_OVERRIDES_MAX_BYTES} bytes in "
            "all; report a part of it (a sub-dir)"
        )
    try:
        data = _read(path, OVERRIDES_MAX_BYTES)
        budget.overrides_bytes -= len(data)
        overrides = load_plain_yaml(data) or []
    except ValueError as error:
        return [], f".hydra/overrides.yaml: {error}"
    if not (isinstance(overrides, list) and all(isinstance(line, str) for line in overrides)):
        return [], ".hydra/overrides.yaml is not a list of key=value strings"
    return overrides, None


def read_optimized_metric(job_dir: Path) -> str | None:
    """`optimized_metric` of the job's saved `.hydra/config.yaml`, if it has a usable one (read up to
    `CONFIG_MAX_BYTES`, as YAML without anchors and aliases; `dim-report` reads the first job's only)."""
    try:
        config = load_plain_yaml(_read(job_dir / ".hydra" / "config.yaml", CONFIG_MAX_BYTES))
    except ValueError:
        return None
    metric = config.get("optimized_metric") if isinstance(config, dict) else None
    return metric if isinstance(metric, str) else None
