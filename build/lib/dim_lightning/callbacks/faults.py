"""Faults on purpose, for tests and drills: `debug=inject_nan` (a non-finite loss at a given step) and
`debug=preempt` (this process sends itself a signal at a given step, as SLURM or Ctrl-C would)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl

from dim_lightning.callbacks.nonfinite import batch_number
from dim_lightning.errors import require


class InjectNonFinite(pl.Callback):
    """Make the training loss non-finite at training batch `step` (0-based over the run).

    `term=None`: the batch's images become NaN, so every loss term is non-finite. `term="local"` or
    `"global"`: only that MI term's loss is NaN (a forward hook on the term for that one batch)."""

    def __init__(self, step: int = 10, term: str | None = None) -> None:
        self.step = step
        self.term = term
        self._hook: Any = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_number(trainer) != self.step:
            return
        if self.term is None:
            images = batch[0]
            require(images.is_floating_point(), "inject_nan needs float images at on_train_batch_start")
            images.fill_(float("nan"))
            return
        terms = pl_module.terms
        require(
            self.term in terms,
            f"callbacks.inject_nan.term={self.term} is not a loss term of this model; choose one of {list(terms)}",
        )
        self._hook = terms[self.term].register_forward_hook(
            lambda module, args, out: out._replace(loss=out.loss * float("nan"))
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class SignalAtStep(pl.Callback):
    """Send this process `signal` (SIGTERM, SIGUSR1, SIGINT) at the end of training batch `step`: a
    preemption at a known point of the run, delivered through the real signal handlers."""

    def __init__(self, step: int = 5, signal: str = "SIGTERM") -> None:
        self.step = step
        self.signal = signal

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_number(trainer) == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), getattr(signal, self.signal))
