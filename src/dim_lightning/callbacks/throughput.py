"""`train/img_per_s`: steady-state training throughput, measured around the training steps only."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


class ThroughputMonitor(pl.Callback):
    """Steady-state training throughput `train/img_per_s` (all devices), excluding the first
    `warmup_steps` steps and the gaps between epochs (validation, checkpointing). The clock is read (and
    a GPU synchronised) only where an epoch's timed window opens and closes, never inside it."""

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = warmup_steps
        self.images = 0
        self.seconds = 0.0
        self.window: tuple[float, int] | None = None  # (start time, images so far) of the open window

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.window = None

    def _close(self, pl_module: pl.LightningModule) -> None:
        if self.window is not None and self.window[1] > 0:
            self.seconds += self._now(pl_module) - self.window[0]
            self.images += self.window[1]
        self.window = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step <= self.warmup_steps:
            return
        if self.window is None:
            self.window = (self._now(pl_module), 0)
            return
        self.window = (self.window[0], self.window[1] + len(batch[1]) * trainer.world_size)
        if batch_idx + 1 >= trainer.num_training_batches:
            self._close(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close(pl_module)  # an epoch whose length was unknown
        if self.seconds > 0:
            pl_module.log("train/img_per_s", self.images / self.seconds, rank_zero_only=True)
