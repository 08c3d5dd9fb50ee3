"""Training metrics summed on the device, read only when they are logged: the whole-step path's replacement
for a `self.log` per value per step (each a Python call, and with `on_step` under DDP an all-reduce)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StepMetrics(nn.Module):
    """Sums of per-step metric vectors over the current log window and the current epoch, kept as device
    buffers. The epoch's sums go into checkpoints (`state`, `load`), so an epoch cut by a stop has the means of
    all its steps when resumed; a log window is only a progress read-out and starts afresh."""

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

    def state(self) -> dict[str, Tensor | int]:
        return {"epoch_sum": self.epoch_sum.detach().cpu().clone(), "epoch_steps": self.epoch_steps}

    def load(self, state: dict[str, Tensor | int]) -> None:
        self.epoch_sum.copy_(state["epoch_sum"])
        self.epoch_steps = int(state["epoch_steps"])

    def take_epoch(self) -> Tensor:
        mean = self.epoch_sum / max(self.epoch_steps, 1)
        self.epoch_sum.zero_()
        self.epoch_steps = 0
        self.take_window()
        return mean
