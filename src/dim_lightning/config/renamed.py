"""Keys that moved: Adam's `betas`, `eps` and `weight_decay` live only under `model.optimizer.*` (beside
`model.beta`, the local MI weight, `model.betas` misled). An old key, on the command line or in a saved config,
is refused with the new key named (exit 2), never silently ignored."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any

from dim_lightning.errors import DIMError, user_errors_exit

RENAMED = {
    "model.betas": "model.optimizer.betas",
    "model.eps": "model.optimizer.eps",
    "model.weight_decay": "model.optimizer.weight_decay",
}


def _message(old: str, fix: str = "") -> str:
    new = RENAMED[old]
    fix = fix or f"write {new}=... instead"
    return f"{old} was renamed {new} (Adam's settings live under model.optimizer); {fix}"


def _has(config: Mapping[str, Any], dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def renamed_key_problems(config: Mapping[str, Any]) -> list[str]:
    """A problem per old key found in a config (a composed DictConfig or a saved plain dict)."""
    return [_message(old) for old in RENAMED if _has(config, old)]


def renamed_override_problems(overrides: list[str], fix: str = "") -> list[str]:
    """A problem per command-line override of an old key (`model.betas=...`, `+model.eps=...`, `~model.betas`);
    `fix` replaces the advice to write the new key (a program without model settings says what to do instead)."""
    keys = [arg.split("=", 1)[0].lstrip("+~") for arg in overrides if not arg.startswith("-")]
    return [_message(key, fix) for key in keys if key in RENAMED]


def refuse_renamed_overrides(program: str, fix: str = "") -> Callable:
    """Decorate a Hydra main: an old key on the command line ends with the new key named and exit 2, before
    Hydra composes (which would refuse it as an unknown key without naming the new one)."""

    def decorate(main: Callable) -> Callable:
        @functools.wraps(main)
        def checked(*args, **kwargs):
            problems = renamed_override_problems(sys.argv[1:], fix)
            with user_errors_exit(program):
                if problems:
                    raise DIMError("; ".join(problems))
            return main(*args, **kwargs)

        return checked

    return decorate


def refuse_old_saved_config(saved: Mapping[str, Any], source: str) -> None:
    """Raise `DIMError` when a saved run config (`source`: e.g. a run dir's checkpoint) still has an old key."""
    old = [key for key in RENAMED if _has(saved, key)]
    if old:
        moved = ", ".join(f"{key} (now {RENAMED[key]})" for key in old)
        raise DIMError(
            f"{source} holds a config written before Adam's settings moved under model.optimizer: it has {moved}. "
            "Continue that run with today's keys with ckpt_path=last, start afresh here with resume=false, or use "
            "another hydra.run.dir"
        )
