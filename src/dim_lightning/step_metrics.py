"""Training metrics summed on the device, read only when they are logged: the whole-step path's replacement
for a `self.log` per value per step (each a Python call, and with `on_step` under DDP an all-reduce)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StepMetrics(nn.Module):
    """Sums of per-step metric vectors over the current log window and the current epoch, kept as device
    buffers (not saved in checkpoints: a resumed epoch's means start from the resumed step)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("window_sum", torch.zeros(size), persistent=False)
        self.register_buffer("epoch_sum", torch.zeros(size), persistent=False)
        self.window_steps = 0
        self.epoch_steps = 0

    def add(self, values: Tensor) -> None:
        self.window_sum += values
        self.epoch_sum += values
        self.window_steps += 1
        self.epoch_steps += 1

    def take_window(self) -> Tensor:
        """The mean over the steps since the last call (a new tensor: no sync here), and a fresh window."""
        mean = self.window_sum / max(self.window_steps, 1)
        self.window_sum.zero_()
        self.window_steps = 0
        return mean

    def take_epoch(self) -> Tensor:
        mean = self.epoch_sum / max(self.epoch_steps, 1)
        self.epoch_sum.zero_()
        self.epoch_steps = 0
        self.take_window()
        return mean
