"""A checkpoint being resumed, checked before Lightning restores any of it (`DIMModule.on_load_checkpoint`).

The file was read as files from others are (`dim_lightning.run.checkpoint_file`: bounded, plain data); here each
part is compared with what this run itself would write there, so that a checkpoint that does not fit (another
model, another version of Lightning, an edited file) is one error listing every difference, not a traceback or
a silently broadcast tensor halfway into training:
- the weights: the module's names and shapes;
- Lightning's loop progress: the keys and types of this trainer's own loops, at an epoch within max_epochs;
- the optimizer state: its groups' parameters, each state tensor a scalar or its parameter's shape;
- each rank's RNG states (they must restore) and the whole step's epoch sums;
- the precision plugin's, the data module's and each callback's state (those that define `state_problems`).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from dim_lightning.errors import DIMError
from dim_lightning.run.checkpoint_file import weight_problems
from dim_lightning.run.state_checks import like_problems, optimizer_state_problems, per_rank_problems
from dim_lightning.run.untrusted import MAPPINGS, TENSORS
from dim_lightning.training.rng_state import rng_states, set_rng_states

LOOPS = ("fit_loop", "validate_loop", "test_loop", "predict_loop")


def _loop_problems(loops: Any, trainer: pl.Trainer) -> list[str]:
    """Lightning's loop progress: this trainer's keys and types. A loop's own entries may be missing (Lightning
    skips those a checkpoint of another 2.x version lacks), and loops other than fit_loop (not read in a fit)."""
    template = {name: getattr(trainer, name).state_dict() for name in LOOPS}
    optional = frozenset({*LOOPS[1:], *(key for state in template.values() for key in state)})
    problems = like_problems(loops, template, "loops", optional)
    if problems:
        return problems
    epoch = loops["fit_loop"].get("epoch_progress", {}).get("current", {}).get("completed", 0)
    if trainer.max_epochs not in (None, -1) and epoch > trainer.max_epochs:
        return [f"it is at epoch {epoch}, past trainer.max_epochs={trainer.max_epochs}: raise trainer.max_epochs"]
    return []


def _optimizer_problems(states: Any, module: pl.LightningModule) -> list[str]:
    """The one optimizer this module makes (`configure_optimizers`), as Lightning saves it: a list of one."""
    if type(states) is not list or len(states) != 1:
        return ["optimizer_states must hold the state of one optimizer"]
    return optimizer_state_problems(states[0], module.configure_optimizers(), "optimizer_states.0")


def _restore_problem(states: dict[str, Any], where: str) -> list[str]:
    """Whether `states` restore (the caller puts this process's own back; the CUDA generators, restored only on
    a machine with CUDA, are set again from the checkpoint when training starts)."""
    try:
        set_rng_states(states)
    except (RuntimeError, ValueError, TypeError, OverflowError) as error:
        return [f"{where} does not restore ({error})"]
    return []


def _rng_problems(per_rank: Any, key: str) -> list[str]:
    """Each rank's RNG states: this process's structure, and they restore (tried here; its own put back)."""
    if per_rank is None:
        return []
    if problems := per_rank_problems(per_rank, key):
        return problems
    own = rng_states()
    template = {name: own[name] for name in ("torch", "numpy", "python")}
    problems = []
    try:
        for rank, states in enumerate(per_rank):
            where = f"{key}.{rank}"
            if type(states) not in MAPPINGS:
                problems.append(f"{where} must be a mapping")
                continue
            found = like_problems({k: v for k, v in states.items() if k != "cuda"}, template, where)
            cuda = states.get("cuda", [])
            if type(cuda) is not list or not all(type(t) in TENSORS and t.dtype == torch.uint8 for t in cuda):
                found.append(f"{where}.cuda must be a list of byte tensors")
            problems += found or _restore_problem(states, where)
    finally:
        set_rng_states(own)
    return problems


def _component_problems(checkpoint: dict[str, Any], trainer: pl.Trainer) -> list[str]:
    """The precision plugin's state against its own; the data module's and callbacks' by their `state_problems`."""
    problems = []
    plugin, own = trainer.precision_plugin, trainer.precision_plugin.state_dict()
    if type(plugin).__qualname__ in checkpoint and own:  # a plugin with no state (bf16) ignores the file's
        problems += like_problems(checkpoint[type(plugin).__qualname__], own, type(plugin).__qualname__)
    datamodule = trainer.datamodule
    key = type(datamodule).__qualname__
    if key in checkpoint and hasattr(datamodule, "state_problems"):
        problems += [f"{key}: {p}" for p in datamodule.state_problems(checkpoint[key], trainer)]
    saved = checkpoint.get("callbacks") or {}
    for callback in trainer.callbacks:
        if callback.state_key in saved and hasattr(callback, "state_problems"):
            name = type(callback).__name__
            problems += [f"callbacks.{name}: {p}" for p in callback.state_problems(saved[callback.state_key], trainer)]
    return problems


def training_state_problems(
    checkpoint: dict[str, Any], trainer: pl.Trainer, module: pl.LightningModule, rng_key: str, sums_key: str
) -> list[str]:
    """Every way `checkpoint` does not fit this run (empty when it can be resumed); see the module doc."""
    problems = weight_problems(module.state_dict(), checkpoint["state_dict"])
    problems += _loop_problems(checkpoint.get("loops"), trainer)
    problems += _optimizer_problems(checkpoint.get("optimizer_states"), module)
    if "lr_schedulers" not in checkpoint:  # the module configures none, but Lightning reads the key
        problems.append("lr_schedulers is missing")
    problems += _rng_problems(checkpoint.get(rng_key), rng_key)
    step_metrics = getattr(module, "step_metrics", None)
    if step_metrics is not None and sums_key in checkpoint:
        sums = checkpoint[sums_key]
        problems += per_rank_problems(sums, sums_key) or like_problems(
            sums, [step_metrics.state()] * len(sums), sums_key
        )
    return problems + _component_problems(checkpoint, trainer)


def require_resumable(
    checkpoint: dict[str, Any], trainer: pl.Trainer, module: pl.LightningModule, rng_key: str, sums_key: str
) -> None:
    """Raise one `DIMError` listing every problem of `training_state_problems`."""
    problems = training_state_problems(checkpoint, trainer, module, rng_key, sums_key)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:12]) + (
            f"\n  - and {len(problems) - 12} more" * (len(problems) > 12)
        )
        raise DIMError(
            f"ckpt_path={trainer.ckpt_path} cannot be resumed by this run ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}): it was written by another model or config, or edited. Resume "
            "it with the config it was trained with, evaluate it with `python -m dim_lightning.evaluate "
            f"ckpt=...`, or start afresh:\n{listed}"
        )
