"""What a W&B sweep file may ask of the offline sweep runner. A sweep file can come from someone else, so it may
only run this project's training program and choose hyperparameters for it:

- `program:` is train.py (or absent): this project's training program, run as `python -m dim_lightning.train`
  from the installed package, never a file found beside the sweep file or in the working directory;
- `command:` is `[${env}] ${interpreter} ${program}` followed by `${args_no_hyphens}` (once) and plain Hydra
  overrides (key=value). Nothing before the program: `/usr/bin/env` would run a word that is not key=value, and
  take a word that is as an environment variable (PYTHONPATH=..., LD_PRELOAD=...);
- an override (the command's own, or a parameter with each of its values) sets a key the config has (no +, ~,
  @package or option flag) to a value that is not an interpolation or a mapping, and a config group only to one
  of its options in conf/ (a path such as ../../x would load any YAML file);
- and it may not change what runs, where a run writes or what it trusts: keys under hydra (callbacks, launcher,
  search path, run dir) or paths, instantiation keys (_target_, _args_, ...), folders (*dir, *dirpath),
  trust_checkpoint, ckpt_path and resume_from. Those belong on the command line, which is yours.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dim_lightning.config import CONF_DIR

PROGRAM = "train.py"
TRAINING_PROGRAM = ["-m", "dim_lightning.train"]
ARGS = "${args_no_hyphens}"
KEY = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*")
OPTION = re.compile(r"[\w-]+")
REFUSED_ROOTS = ("hydra", "paths")
REFUSED_NAMES = ("trust_checkpoint", "ckpt_path", "resume_from")
ALLOWED = (
    "a sweep file may only choose hyperparameters: what runs, where a run writes and what it trusts (hydra.*, "
    "paths.*, _target_, *dir, trust_checkpoint, ckpt_path) are set on your command line, not in a file"
)


def program_problem(program: Any) -> str | None:
    if program in (None, PROGRAM):
        return None
    return (
        f"program: {program!r} is not this project's training program; a sweep file may only run program: "
        f"{PROGRAM} (python -m dim_lightning.train)"
    )


def _key_problem(key: str) -> str | None:
    parts = key.split(".")
    if parts[0] in REFUSED_ROOTS or any(p.startswith("_") and p.endswith("_") for p in parts):
        return ALLOWED
    if parts[-1].endswith(("dir", "dirpath")) or parts[-1] in REFUSED_NAMES:
        return ALLOWED
    return None


def _value_problem(key: str, value: str) -> str | None:
    if "${" in value:
        return "its value is an interpolation (${...}), which can read the environment; write the value itself"
    if "{" in value:
        return "its value is a mapping; a sweep value is a number, a string, a boolean or a list of them"
    group = CONF_DIR / Path(*key.split("."))
    if group.is_dir() and not OPTION.fullmatch(value):  # a name Hydra looks up in conf/<group>/, never a path
        options = sorted(p.stem for p in group.glob("*.yaml"))
        return f"{key} is a config group: choose one of {', '.join(options)}"
    return None


def override_problem(override: str) -> str | None:
    """Why `override` (key=value) may not come from a sweep file, or None."""
    key, equals, value = override.partition("=")
    if not equals or not KEY.fullmatch(key):
        return (
            "it is not a plain Hydra override key=value (a key the config has: no +, ~, @ or leading -); "
            "add keys and options on your command line"
        )
    return _key_problem(key) or _value_problem(key, value)


def command_problems(command: Any) -> list[str]:
    """Why the sweep file's `command:` list may not run, one line each."""
    if not (isinstance(command, list) and all(isinstance(word, str) for word in command)):
        return ["command: must be a list of strings"]
    head = command[1:] if command[:1] == ["${env}"] else command
    problems = []
    if head[:2] != ["${interpreter}", "${program}"]:
        problems.append(
            'command: must start ["${env}", "${interpreter}", "${program}"] (${env} optional): anything before the '
            "program would be run, or passed to /usr/bin/env as an environment variable"
        )
    if head[2:].count(ARGS) != 1:
        problems.append(f"command: must hold {ARGS} once, after ${{program}}")
    for word in head[2:]:
        problem = None if word == ARGS else override_problem(word)
        if problem:
            problems.append(f"command: {word!r}: {problem}")
    return problems
