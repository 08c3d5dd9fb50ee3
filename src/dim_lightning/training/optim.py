"""Optimizer factories for `model.optimizer` (called by `configure_optimizers` once the parameters are on
their device)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def use_fused(tensors: list[Tensor], fused: bool | None, clips_under_mixed_precision: bool) -> bool:
    """Whether Adam runs its fused kernel. `fused=None` picks it exactly when every parameter is on CUDA (one
    launch per step instead of several per tensor) and gradients are not clipped under mixed precision:
    Lightning's mixed-precision plugin refuses to clip for an optimizer that unscales gradients itself, as the
    fused kernel does ("does not allow for gradient clipping"), so the unfused kernel is used there. An explicit
    `fused` is kept (config validation refuses model.optimizer.fused=true with clipping under mixed precision)."""
    if fused is None:
        return bool(tensors) and all(p.device.type == "cuda" for p in tensors) and not clips_under_mixed_precision
    return fused


def adam(
    params: Iterable[nn.Parameter] | Iterable[dict],
    fused: bool | None = None,
    clips_under_mixed_precision: bool = False,
    **options,
) -> torch.optim.Adam:
    """`torch.optim.Adam` on parameters or parameter groups, fused as `use_fused` decides."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = use_fused(tensors, fused, clips_under_mixed_precision)
    return torch.optim.Adam(params, fused=fused or None, **options)
