"""Frozen-encoder features at the paper's three places, over a whole split:
"conv" (the last conv feature map, flattened), "fc" (the layer before the code) and "Y" (the code's mean)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.utils.timing import progress

PLACES: dict[str, Callable[[EncoderOutput], Tensor]] = {
    "conv": lambda out: out.conv.flatten(1),
    "fc": lambda out: out.fc,
    "Y": lambda out: out.Y,
}


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    loader: DataLoader,
    normalize: Callable[[Tensor], Tensor],
    device: torch.device,
    places: Sequence[str] = ("Y",),
    description: str | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """{place: features [N, D]} (float32, CPU) and labels [N] for every batch of `loader`, in eval mode, with a
    progress bar titled `description` when given. The features are collected on `device` and copied to the host
    once, not batch by batch."""
    was_training = encoder.training
    encoder.eval()
    features: dict[str, list[Tensor]] = {place: [] for place in places}
    labels = []
    try:
        batches = loader if description is None else progress(loader, len(loader), description)
        for images, batch_labels in batches:
            out = encoder(normalize(images.to(device)))
            for place in places:
                features[place].append(PLACES[place](out).float())  # on the device: no copy and sync per batch
            labels.append(batch_labels)
    finally:
        encoder.train(was_training)
    return {place: torch.cat(chunks).cpu() for place, chunks in features.items()}, torch.cat(labels)


def flat_pixels(images: Tensor, normalize: Callable[[Tensor], Tensor]) -> Tensor:
    """Raw pixels as features, scaled as the encoder sees them: the baseline every representation must beat."""
    return normalize(images).flatten(1)


def code_summary(codes: Tensor, dead_std: float = 1e-4) -> dict[str, float]:
    """The blog recipe's sanity check (mean and std of all codes; is the prior doing anything?) plus the fraction
    of code dimensions that never vary (std below `dead_std`)."""
    return {
        "codes/mean": codes.mean().item(),
        "codes/std": codes.std().item(),
        "codes/dead_fraction": (codes.std(0) < dead_std).float().mean().item(),
    }
