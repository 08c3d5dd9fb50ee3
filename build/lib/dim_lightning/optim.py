"""Optimizer factories for `model.optimizer` (called by `configure_optimizers` once the parameters are on
their device)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def adam(params: Iterable[nn.Parameter] | Iterable[dict], fused: bool | None = None, **options) -> torch.optim.Adam:
    """`torch.optim.Adam` (parameters or parameter groups); `fused=None` uses the fused kernel exactly when
    every parameter is on CUDA (one launch per step instead of several per tensor), the default elsewhere."""
    params = list(params)
    if fused is None:
        tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
        fused = bool(tensors) and all(p.device.type == "cuda" for p in tensors)
    return torch.optim.Adam(params, fused=fused or None, **options)
