"""Every use of Lightning's private API, in one module.

Preemption, the epoch means, the step checkpoint and the DDP strategy need a few things Lightning's loops and
launcher do not expose. Each is wrapped here and tested against a real `Trainer` in tests/test_lightning_compat.py,
so an upgrade that moves one fails there by name; pyproject bounds pytorch-lightning to the versions tested.
"""

from __future__ import annotations

import typing
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.connector import _PRECISION_INPUT
from lightning_fabric.plugins.environments import ClusterEnvironment
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch import Tensor

PRECISIONS = tuple(p for literal in typing.get_args(_PRECISION_INPUT) for p in typing.get_args(literal))


def drop_wandb_init_argument(logger: WandbLogger, name: str) -> WandbLogger:
    """`logger` without the `wandb.init` argument `name`: Lightning passes `anonymous=None`, which wandb >= 0.19
    answers with "The anonymous setting has no effect" on every run."""
    getattr(logger, "_wandb_init", {}).pop(name, None)  # renamed by an upgrade: the warning is back, nothing breaks
    return logger


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's Trainer, or None outside a fit (`module.trainer` raises there)."""
    return module._trainer


def accumulating(trainer: pl.Trainer) -> bool:
    """Whether the batch just trained is inside a gradient-accumulation window (its gradients not applied yet)."""
    return trainer.fit_loop.epoch_loop._should_accumulate()


def epochs_last_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch just trained was the epoch's last (the epoch's validation and end come next)."""
    return trainer.fit_loop.epoch_loop._num_ready_batches_reached()


def stop_at_next_check(trainer: pl.Trainer) -> None:
    """Have Lightning raise `SIGTERMException` at its next check: after this training batch, or from a
    `on_train_epoch_end` hook once the epoch is counted complete."""
    trainer._signal_connector.received_sigterm = True


def cluster_environment(trainer: pl.Trainer) -> ClusterEnvironment:
    """The cluster environment Lightning detected (SLURM, torchelastic, ...), whatever the strategy."""
    return trainer._accelerator_connector.cluster_environment


def epoch_sums(trainer: pl.Trainer) -> dict[str, dict[str, Tensor]]:
    """The running state of each tensor the training step logs with `on_epoch=True`, as CPU copies: `value` (the
    sum, max or min so far) and, for means, `count` (the batch-size total)."""
    sums = {}
    for key, metric in trainer.fit_loop.epoch_loop._results.items():
        if not (metric.is_tensor and metric.meta.on_epoch):
            continue
        state = {"value": metric.value.detach().cpu().clone()}
        if metric.meta.is_mean_reduction:
            state["count"] = metric.cumulated_batch_size.detach().cpu().clone()
        sums[key] = state
    return sums


def add_epoch_sums(trainer: pl.Trainer, sums: dict[str, dict[str, Tensor]]) -> None:
    """Add saved running sums ({key: {"value", "count"}}) into this epoch's, reduced as each metric reduces."""
    results = trainer.fit_loop.epoch_loop._results
    for key, state in sums.items():
        metric = results.get(key)
        if metric is None or not metric.is_tensor:
            continue
        value = state["value"].to(metric.value)
        if metric.meta.is_mean_reduction:
            metric.value = value + metric.value
            metric.cumulated_batch_size = state["count"].to(metric.cumulated_batch_size) + metric.cumulated_batch_size
        elif metric.meta.is_sum_reduction:
            metric.value = value + metric.value
        else:
            metric.value = metric.meta.reduce_fx(value, metric.value)


class _LauncherWithin(_SubprocessScriptLauncher):
    """Lightning's launcher of ranks > 0 (it re-runs the script), starting them inside a given context."""

    def __init__(self, within: typing.Callable[[], AbstractContextManager], *args: Any) -> None:
        super().__init__(*args)
        self._within = within

    def _call_children_scripts(self) -> None:
        with self._within():
            super()._call_children_scripts()


class RelaunchingDDPStrategy(DDPStrategy):
    """`DDPStrategy` with two changes Lightning has no public hook for: ranks > 0 are started (by re-running the
    script) inside `relaunch_context()`, and Lightning's per-step broadcast of its SIGTERM flag (a collective and
    a host read before every training batch) is off, for callers that agree on stops themselves."""

    def relaunch_context(self) -> AbstractContextManager:
        """The context the child processes are started in (e.g. their command line changed)."""
        return nullcontext()

    def setup(self, trainer: pl.Trainer) -> None:
        super().setup(trainer)
        trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = _no_broadcast

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = _LauncherWithin(
                self.relaunch_context, self.cluster_environment, self.num_processes, self.num_nodes
            )


def _no_broadcast() -> None:
    """Stands in for Lightning's per-step stop-signal broadcast (see `RelaunchingDDPStrategy`)."""
