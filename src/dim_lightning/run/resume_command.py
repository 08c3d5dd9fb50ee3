"""What the same command does after a stop, and the command that continues the run. "The same command resumes" is
true only in a run dir the command names (hydra.run.dir=...), with resume left true and no ckpt_path=<file>: with
resume=false the same command starts afresh (setting the run aside), with ckpt_path=<file> it starts from that file
again, and a fresh timestamped run dir is never found again by the same command."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

START_KEYS = ("resume", "ckpt_path")


def _parsed(overrides: list[str]) -> list[tuple[str, Any]]:
    """(key, value) of each override as Hydra reads it (`resume=false` -> ("resume", False))."""
    try:
        return [(o.key_or_group, o.value()) for o in OverridesParser.create().parse_overrides(overrides)]
    except Exception:  # Hydra parsed them already; a value it cannot give back is not a start key
        return [(o.split("=", 1)[0].lstrip("+~"), None) for o in overrides]


def _program() -> list[str]:
    """How this program was started: `python <path>/train.py` or `dim-train`, with the config folder and name the
    command line gave Hydra (--config-dir, --config-name)."""
    name = Path(sys.argv[0]).name
    program = ["python", sys.argv[0]] if name == "train.py" else ["dim-train" if "dim-train" in name else "python"]
    if program == ["python"]:
        program.append("train.py")
    hydra = HydraConfig.get()
    for source in hydra.runtime.config_sources:
        if source.provider == "command-line":
            program += ["--config-dir", str(source.path).removeprefix("file://")]
    if hydra.job.config_name not in (None, "train"):
        program += ["--config-name", str(hydra.job.config_name)]
    return program


def hydra_value(text: str) -> str:
    """`text` as a Hydra override value: as it is when plain, else quoted (a `,` would make a sweep, `=`, `[` or a
    quote would not parse)."""
    if re.fullmatch(r"[\w./~-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def continue_command(run_dir: str | Path) -> str | None:
    """The command that continues the run in `run_dir`: this program and its overrides less resume=false and a
    ckpt_path=<file> (ckpt_path=last instead), with `hydra.run.dir=<run_dir>`; None outside a Hydra command (a
    call of `train` from Python)."""
    if not HydraConfig.initialized():
        return None
    task = list(HydraConfig.get().overrides.task)
    parsed = _parsed(task)
    kept = [o for o, (key, _) in zip(task, parsed, strict=True) if key not in START_KEYS]
    restarts = any(key == "ckpt_path" and value is not None for key, value in parsed)
    again = [*kept, *(["ckpt_path=last"] if restarts else []), f"hydra.run.dir={hydra_value(str(run_dir))}"]
    return " ".join(shlex.quote(part) for part in [*_program(), *again])


def after_stop(run_dir: str | Path, continues: str) -> str:
    """The sentence for a stop message: what the same command does now (`continues`, e.g. "resumes from it", when
    it continues the run) and, where it would not, the command that does."""
    if not HydraConfig.initialized():
        return f"Running the same config again in {run_dir} (resume=true) {continues}."
    hydra = HydraConfig.get()
    starts = {key: value for key, value in _parsed(list(hydra.overrides.task)) if key in START_KEYS}
    multirun = hydra.mode == RunMode.MULTIRUN
    fixed_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    fixed = any(key == fixed_key for key, _ in _parsed(list(hydra.overrides.hydra)))
    command = continue_command(run_dir)
    if starts.get("resume", True) is False:
        same = f"The same command (resume=false) would start afresh, setting this run aside in {run_dir}/previous/"
    elif starts.get("ckpt_path") not in (None, "last"):
        same = f"The same command (ckpt_path={starts['ckpt_path']}) would start again from that file"
    elif not fixed:
        same = (
            "The same multirun command would start a new sweep dir (a launcher's requeue of this job continues it)"
            if multirun
            else "The same command would start a new run in a new timestamped dir"
        )
    else:
        return f"The same command {continues}."
    return f"{same}; to continue this run instead: {command}"
