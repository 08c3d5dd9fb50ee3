"""Frozen-encoder feature extraction over a whole split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader


@torch.no_grad()
def extract_codes(
    encoder: nn.Module, loader: DataLoader, normalize: Callable[[Tensor], Tensor], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Deterministic codes (the head's mean) and labels for every batch of `loader`, on the CPU."""
    was_training = encoder.training
    encoder.eval()
    codes, labels = [], []
    try:
        for images, batch_labels in loader:
            codes.append(encoder(normalize(images.to(device))).mean.float().cpu())
            labels.append(batch_labels)
    finally:
        encoder.train(was_training)
    return torch.cat(codes), torch.cat(labels)


def flat_pixels(images: Tensor, normalize: Callable[[Tensor], Tensor]) -> Tensor:
    """Raw pixels as features, scaled as the encoder sees them: the baseline every representation must beat."""
    return normalize(images).flatten(1)
