"""The cut epoch's running means travel in the checkpoint, so a mid-epoch resume logs the whole epoch's means.

Lightning keeps each `on_epoch` training metric's running sum and count in memory only, so a resumed epoch would
average the resumed batches alone. `ResumableEpochMeans` saves every rank's sums in each mid-epoch checkpoint and
adds them back after the first resumed batch: `saved + resumed` is bitwise the uninterrupted sum (float addition
commutes and `0 + x` is `x`). It also keeps the last epoch's means in the end-of-training checkpoint, for a
restart that only redoes the final evaluation.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from dim_lightning.data.resume import training_position
from dim_lightning.run.distributed import gather_per_rank, own_rank_entry
from dim_lightning.run.lightning_compat import add_epoch_sums, epoch_sums
from dim_lightning.run.state_checks import like_problems, per_rank_problems
from dim_lightning.run.untrusted import TENSORS


def _sums_problems(sums: Any, where: str) -> list[str]:
    """A rank's running sums: {metric key: {"value": a number, "count": a number}} (every training metric logged
    per epoch is a mean), each a single-number tensor (a longer one would be broadcast into the resumed epoch's
    sums)."""
    if type(sums) is not dict:
        return [f"{where} must be a mapping of metric keys to their sums"]
    return [
        f"{where}.{key} must hold a single-number value and count"
        for key, state in sums.items()
        if not (
            type(state) is dict
            and set(state) == {"value", "count"}
            and all(type(part) in TENSORS and part.dim() == 0 for part in state.values())
        )
    ]


class ResumableEpochMeans(pl.Callback):
    """Carry the training epoch's running sums of logged values across a mid-epoch checkpoint (see module doc)."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None
        self._final: dict[str, float] | None = None  # the training numbers at the end of training

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        epoch, done = training_position(trainer)
        mid_epoch = epoch == trainer.current_epoch and done > 0
        state = {"epoch": epoch, "sums_per_rank": gather_per_rank(epoch_sums(trainer) if mid_epoch else {})}
        if self._final is not None:
            state["final_metrics"] = self._final
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict or None
        self._final = (state_dict or {}).get("final_metrics")

    def state_problems(self, state: Any, trainer: pl.Trainer) -> list[str]:
        """What is wrong with a saved state (checked before a resume restores it)."""
        if not state:
            return []
        if type(state) is not dict or set(state) - {"final_metrics"} != {"epoch", "sums_per_rank"}:
            return ["must hold epoch and sums_per_rank (and final_metrics)"]
        problems = like_problems(state["epoch"], 0, "epoch")
        per_rank = state["sums_per_rank"]
        problems += per_rank_problems(per_rank, "sums_per_rank")
        if not problems:
            problems += [p for rank, sums in enumerate(per_rank) for p in _sums_problems(sums, f"sums_per_rank.{rank}")]
        final = state.get("final_metrics", {})
        if type(final) is not dict or not all(type(k) is str and type(v) in (int, float) for k, v in final.items()):
            problems.append("final_metrics must map metric names to numbers")
        return problems

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._final = None  # training goes on: the numbers will come from this run

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._final = {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Before the final evaluation reads them: the training numbers of a finished run restarted only for
        its evaluation (nothing was trained, so Lightning has none)."""
        for name, value in (self._final or {}).items():
            trainer.callback_metrics.setdefault(name, torch.tensor(value))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pending, self._pending = self._pending, None
        if pending is None or pending.get("epoch") != trainer.current_epoch:
            return
        sums = own_rank_entry(pending.get("sums_per_rank"))
        if sums is None:
            rank_zero_warn(
                "the checkpoint's epoch means are from another device count; this epoch's means cover "
                "the resumed batches only"
            )
            return
        add_epoch_sums(trainer, sums)
