"""A non-finite loss stops the run with the step and the terms named (or, when asked, the batch is skipped).

Speed: stopping needs no host-device sync per step. Each step's loss and loss terms are checked on the device
and the first non-finite step and its terms are kept in device tensors; they are read (one sync) every
`check_every_n_steps` steps on an accelerator (every step on CPU, where reading costs nothing), at each epoch
end and before every checkpoint is written. So the run may go on for up to `check_every_n_steps` steps after
the first bad one, but the message names that first step, and no checkpoint with non-finite weights is ever
written: the last good checkpoint stays. Skipping (`model.skip_nonfinite=true`) must decide before each
optimizer step, so it reads the loss every step (one sync per step, opt-in). The skipped batch's values
were already logged by the training step, so that epoch's `train/*` means are non-finite; later epochs are not.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from dim_lightning.errors import DIMError
from dim_lightning.run.state_checks import like_problems


class TrainingDiverged(DIMError):
    """The training loss became non-finite; the message names the step, the terms and the fixes."""


def batch_number(trainer: pl.Trainer) -> int:
    """The current training batch's index over the whole run (0-based; equals global_step with one optimizer)."""
    return trainer.fit_loop.epoch_loop.total_batch_idx


class NonFiniteGuard(pl.Callback):
    """Stop the run at a non-finite training loss (default), or skip such batches (`skip=True`).

    Stopping raises `TrainingDiverged` (exit code 2 from train.py, no traceback). Skipping drops the batch's
    gradients before the optimizer step (so weights and optimizer state are untouched), restores BatchNorm
    buffers to their values before the batch, marks the step's outputs `skipped` (the online probes leave it
    out), and logs
    the running count as `train/skipped_nonfinite`.
    """

    def __init__(self, skip: bool = False, check_every_n_steps: int = 50) -> None:
        self.skip = skip
        self.check_every_n_steps = check_every_n_steps
        self.skipped = 0
        self._first_bad: Tensor | None = None  # first non-finite batch number, -1 while none
        self._bad_terms: Tensor | None = None  # which of `_names` were non-finite at that batch
        self._names: list[str] = []
        self._loss: Tensor | None = None
        self._buffers: list[Tensor] = []
        self._skip_this_batch = False

    # -- skipping ---------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._skip_this_batch = False
        if self.skip:
            self._buffers = [b.detach().clone() for b in pl_module.buffers()]

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.skip or self._loss is None:
            return
        # Under DDP the gradients are already averaged: every rank must skip if any rank's loss is non-finite.
        bad = self._skip_this_batch or not bool(torch.isfinite(self._loss))
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        self._skip_this_batch = True
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None  # optimizers leave parameters without gradients alone

    # -- detection ----------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs: dict[str, Any], batch, batch_idx) -> None:
        if outputs is None:
            return
        terms = {k: v for k, v in (outputs.get("terms") or {}).items() if isinstance(v, Tensor)}
        names = ["loss", *terms]
        values = torch.stack(
            [outputs["loss"].detach().float().reshape(()), *(v.float().reshape(()) for v in terms.values())]
        )
        bad = ~torch.isfinite(values)
        if self.skip:
            self._after_skip_check(trainer, pl_module, outputs, names, bad)
            return
        if self._first_bad is None or names != self._names:
            self._names = names
            self._first_bad = torch.full((), -1, dtype=torch.long, device=values.device)
            self._bad_terms = torch.zeros_like(bad)
        # The total loss decides; an MI read-out alone may be -inf (NWJ of a critic far from optimal) and the
        # loss still finite.
        new = bad[0] & (self._first_bad < 0)
        self._first_bad = torch.where(new, batch_number(trainer), self._first_bad)
        self._bad_terms = torch.where(new, bad, self._bad_terms)
        every_step = pl_module.device.type == "cpu" and trainer.world_size == 1  # under DDP a check is a collective
        if every_step or (batch_number(trainer) + 1) % self.check_every_n_steps == 0:
            self.check(trainer)

    def _after_skip_check(self, trainer, pl_module, outputs, names: list[str], bad: Tensor) -> None:
        if not self._skip_this_batch:
            return
        self.skipped += 1
        for saved, buffer in zip(self._buffers, pl_module.buffers(), strict=True):
            buffer.copy_(saved)
        outputs["skipped"] = True  # the online probes leave this batch out
        which = ", ".join(n for n, b in zip(names, bad.tolist(), strict=True) if b) or "gradients"
        rank_zero_info(
            f"Skipped training batch {batch_number(trainer)} (epoch {trainer.current_epoch}): non-finite {which} "
            f"(model.skip_nonfinite=true; {self.skipped} skipped so far)"
        )
        pl_module.log("train/skipped_nonfinite", float(self.skipped), on_step=True, on_epoch=False, reduce_fx="max")

    def check(self, trainer: pl.Trainer) -> None:
        """Raise `TrainingDiverged` if a non-finite loss was seen on any device (one host-device sync, and
        under DDP one all-reduce, so that every rank stops at the same check instead of hanging in a collective)."""
        seen_here = self._first_bad is not None and int(self._first_bad) >= 0
        if not trainer.strategy.reduce_boolean_decision(seen_here, all=False):
            return
        if not seen_here:
            raise TrainingDiverged(
                f"the training loss became non-finite on another device before step {batch_number(trainer)}; "
                "that device's log names the step and the terms. The last good checkpoint in checkpoints/ is kept"
            )
        step = int(self._first_bad)
        terms = [n for n, b in zip(self._names, self._bad_terms.tolist(), strict=True) if b and n != "loss"]
        raise TrainingDiverged(
            f"the training loss became non-finite at step {step} (epoch {trainer.current_epoch}); non-finite: "
            f"{', '.join(terms) or 'the total loss'}. The run stopped; the last good checkpoint in "
            "checkpoints/ is kept (resume with ckpt_path=...). Lower model.lr, clip gradients "
            "(trainer.gradient_clip_val=1.0), or skip such batches with model.skip_nonfinite=true"
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # never write non-finite weights over the last good checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)

    def state_problems(self, state: Any, trainer: pl.Trainer) -> list[str]:
        """What is wrong with a saved state (checked before a resume restores it)."""
        return like_problems(state, {"skipped": 0}, "state")
