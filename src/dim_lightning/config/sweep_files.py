"""What a W&B sweep file may ask of the offline sweep runner. A sweep file can come from someone else, so it may
only run this project's training program and choose hyperparameters for it:

- `program:` is train.py (or absent): this project's training program, run as `python -m dim_lightning.train`
  from the installed package, never a file found beside the sweep file or in the working directory;
- `command:` is `[${env}] ${interpreter} ${program}` followed by `${args_no_hyphens}` (once) and plain Hydra
  overrides (key=value). Nothing before the program: `/usr/bin/env` would run a word that is not key=value, and
  take a word that is as an environment variable (PYTHONPATH=..., LD_PRELOAD=...);
- an override (the command's own, or a parameter with each of its values) sets a key of the ALLOW-list below to a
  plain value: no +, ~ or @package, no interpolation (${...}), mapping or Hydra function (choice(...), glob(...)).

The allow-list holds what changes the result of a run but not where it reads or writes, what it trusts or the
machine it takes: the networks and the objective (every key under model., encoder., critic., estimator.,
prior., but not their _target_/_partial_ instantiation keys), the choices among the options in conf/ of those
groups, the data keys that define a data set's images and splits (not data.root, data.cache_dir,
data.follow_links, data.num_workers, data.on_device), the training length and gradient settings of the trainer,
`seed`, and `logger=` (the run's own dir, or W&B). A data set only among those that read no folder (a folder is
yours to name), an experiment only among the presets that choose no data set, evaluation or trainer. Everything
else (a data folder, devices, nodes, precision, the run dir) goes on your command line, after the sweep file:
it is yours, and it wins over the file's values.
"""

from __future__ import annotations

import re
from typing import Any

from dim_lightning.config import CONF_DIR

PROGRAM = "train.py"
TRAINING_PROGRAM = ["-m", "dim_lightning.train"]
ARGS = "${args_no_hyphens}"
KEY = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*")
FUNCTION = re.compile(r"[A-Za-z_][\w.]*\s*\(")  # Hydra's override grammar: choice(...), range(...), glob(...)

HYPERPARAMETER_ROOTS = ("model", "encoder", "critic", "estimator", "prior")
KEYS = {
    "data": (
        "image_size",
        "batch_size",
        "shuffle_seed",
        "crop_padding",
        "flip",
        "test_fraction",
        "val_fraction",
        "split_seed",
        "num_train",
        "num_val",
        "num_classes",
        "channels",
        "seed",
    ),
    "trainer": ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm"),
}
TOP_LEVEL_KEYS = ("seed",)
GROUPS: dict[str, tuple[str, ...] | None] = {  # None: any option of conf/<group>/
    **dict.fromkeys(HYPERPARAMETER_ROOTS),
    "logger": None,
    "data": ("digits", "synthetic"),  # the others read data.root, a folder that is yours to name
    "experiment": ("dim_l",),  # the others choose a data set (and its folder), the evaluation or the trainer
}


def group_options(group: str) -> list[str]:
    """The options of a config group a sweep file may choose: its conf/<group>/*.yaml, as far as `GROUPS` allows."""
    options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
    allowed = GROUPS[group]
    return options if allowed is None else [option for option in options if option in allowed]


def _allowed() -> str:
    groups = ", ".join(
        f"{group}=" if GROUPS[group] is None else f"{group}={'|'.join(group_options(group))}" for group in GROUPS
    )
    keys = ", ".join(f"{root}.{{{','.join(names)}}}" for root, names in KEYS.items())
    return (
        f"a sweep file may only choose hyperparameters: keys under {', '.join(f'{r}.*' for r in HYPERPARAMETER_ROOTS)} "
        f"(not _target_ or _partial_), {keys}, {', '.join(TOP_LEVEL_KEYS)}, and the groups {groups}. A data folder, "
        "devices, nodes, precision or the run dir (data.root, trainer.devices, hydra.*, ...) go on your command line "
        "after the sweep file, e.g. python -m dim_lightning.sweep FILE data=image_folder data.root=/your/images"
    )


ALLOWED = _allowed()


def program_problem(program: Any) -> str | None:
    if program in (None, PROGRAM):
        return None
    return (
        f"program: {program!r} is not this project's training program; a sweep file may only run program: "
        f"{PROGRAM} (python -m dim_lightning.train)"
    )


def key_allowed(key: str) -> bool:
    """Whether a sweep file may set `key` (a dotted config key, or a config group)."""
    root, _, rest = key.partition(".")
    if not rest:
        return key in TOP_LEVEL_KEYS or key in GROUPS
    if root in HYPERPARAMETER_ROOTS:
        return not any(part.startswith("_") for part in rest.split("."))  # _target_, _partial_, _args_, ...
    return rest in KEYS.get(root, ())


def _value_problem(key: str, value: str) -> str | None:
    if "${" in value:
        return "its value is an interpolation (${...}), which can read the environment; write the value itself"
    if "{" in value:
        return "its value is a mapping; a sweep value is a number, a string, a boolean or a list of them"
    if FUNCTION.search(value):
        return "its value calls a Hydra function (choice, range, glob, ...); list the values in the sweep file"
    if key in GROUPS and value not in group_options(key):  # a name Hydra looks up in conf/<group>/, never a path
        others = "" if GROUPS[key] is None else "; choose another on your command line, after the sweep file"
        return f"{key} is a config group: a sweep file may choose one of {', '.join(group_options(key))}{others}"
    return None


def override_problem(override: str) -> str | None:
    """Why `override` (key=value) may not come from a sweep file, or None."""
    key, equals, value = override.partition("=")
    if not equals or not KEY.fullmatch(key):
        return (
            "it is not a plain Hydra override key=value (a key the config has: no +, ~, @ or leading -); "
            "add keys and options on your command line"
        )
    if not key_allowed(key):
        return ALLOWED
    return _value_problem(key, value)


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
