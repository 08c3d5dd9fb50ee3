"""The job folders of a sweep (or run) dir and the small files each holds, read as files from others: a sweep
dir can be copied from someone else, so reading one never follows a symbolic link it holds (a linked job folder
is not walked, a linked file is not read), and costs memory and time bounded by what real files need.

- The walk visits at most `MAX_ENTRIES` files and folders and goes at most `MAX_DEPTH` folders down.
- Each file is read only up to its cap (a real one is a few KB) and parsed as plain data: JSON, or YAML without
  anchors and aliases (`utils.plain_yaml`).
A file that is missing, too large, a link, or not what a run writes leaves its job in the table with a status
that says what is wrong; a walk over the limits is one `DIMError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dim_lightning.errors import require
from dim_lightning.utils.bounded_files import describe, read_capped
from dim_lightning.utils.plain_yaml import load_plain_yaml

RESULT_FILES = ("metrics.json", "eval.json")
MAX_ENTRIES = 1_000_000
MAX_DEPTH = 8
RESULTS_MAX_BYTES = 2**20
OVERRIDES_MAX_BYTES = 64 * 2**10
CONFIG_MAX_BYTES = 2**20
ROW_FIELDS = ("job", "overrides", "status")


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


def read_results(job_dir: Path) -> JobResults:
    """The job's metrics.json (a training run) or eval.json (an evaluate run): a mapping of names to numbers.
    No file: no metrics and no problem (the job has not finished)."""
    found = [job_dir / name for name in RESULT_FILES if os.path.lexists(job_dir / name)]
    if not found:
        return JobResults()
    try:
        results = json.loads(_read(found[0], RESULTS_MAX_BYTES))
    except (ValueError, RecursionError) as error:
        return JobResults(problem=f"{found[0].name}: {error}")
    if not isinstance(results, dict):
        return JobResults(problem=f"{found[0].name} holds a {type(results).__name__}, not a mapping of numbers")
    numbers = {key: _number(value) for key, value in results.items() if key not in ROW_FIELDS}
    metrics = {key: value for key, value in numbers.items() if value is not None}
    dropped = [key for key in results if key not in metrics]
    problem = f"{found[0].name}: left out, not a number: {', '.join(map(str, dropped[:3]))}" if dropped else None
    return JobResults(metrics, problem)


def read_overrides(job_dir: Path) -> tuple[list[str], str | None]:
    """The job's `.hydra/overrides.yaml` (a list of key=value strings), and why it is unusable if it is."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = load_plain_yaml(_read(path, OVERRIDES_MAX_BYTES)) or []
    except ValueError as error:
        return [], f".hydra/overrides.yaml: {error}"
    if not (isinstance(overrides, list) and all(isinstance(line, str) for line in overrides)):
        return [], ".hydra/overrides.yaml is not a list of key=value strings"
    return overrides, None


def read_optimized_metric(job_dir: Path) -> str | None:
    """`optimized_metric` of the job's saved `.hydra/config.yaml`, if it has a usable one."""
    try:
        config = load_plain_yaml(_read(job_dir / ".hydra" / "config.yaml", CONFIG_MAX_BYTES))
    except ValueError:
        return None
    metric = config.get("optimized_metric") if isinstance(config, dict) else None
    return metric if isinstance(metric, str) else None
