"""Optimizer factories for `model.optimizer` (called by `configure_optimizers` once the parameters are on
their device), and the device flags a resumed optimizer state takes from this run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def use_own_settings(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Give a saved optimizer state's param groups (checked by `optimizer_state_problems`) the settings of
    `optimizer`, the one it is about to be loaded into: the learning rate, betas, eps and weight decay are this
    run's config (nothing here changes them during training, so a resumed run of the same config has the same;
    a file's own, lr 0 say, would silently train nothing), and how the update runs is this device's choice (a
    GPU run's checkpoint resumes on a CPU; a kernel the device lacks, such as a capturable Adam on a CPU, would
    stop training with a traceback). Only the moments and step counts come from the file."""
    for group, own in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        group.update({name: value for name, value in own.items() if name != "params"})
