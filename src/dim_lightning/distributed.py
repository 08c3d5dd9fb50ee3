"""Multi-device helpers: a gradient-safe all_gather for DIM's negatives."""

from __future__ import annotations

import torch
from torch import Tensor


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def contiguous_grad(tensor: Tensor) -> Tensor:
    """`tensor`, with the gradient flowing back through it made contiguous.

    Why: the backward of `torch.distributed.nn.functional.all_gather` (what `LightningModule.all_gather(...,
    sync_grads=True)` runs) allocates its receive buffers with `empty_like(grad)`; when the gradient reaching it is
    a non-contiguous view (the einsum of all-pairs scores produces one), gloo fills those buffers as if they were
    contiguous and the features' gradients come back scrambled, silently (measured with torch 2.13: the encoder's
    local-layer gradients under 2-process DDP were uncorrelated with the single-device ones). Apply it to the
    gathered tensor so the gradient entering the collective's backward is contiguous.
    """
    return _ContiguousGrad.apply(tensor)
