"""On-device, batched image transforms: uint8 [N, C, H, W] -> float in [-1, 1] (the blog recipe's scaling),
plus optional random crop (with reflection padding) and horizontal flip for training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def to_signed_unit(images: Tensor) -> Tensor:
    """uint8 0..255 -> float32 -1..1, as the blog recipe's `x / 255 * 2 - 1`."""
    return images.float().div_(127.5).sub_(1.0)


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Pad by `padding` (reflect) and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


class DeviceAugment:
    """Training-time augmentation applied on the device after scaling; draws from `generator` when given
    (the data module seeds one per batch, so the crops and flips of a run are a function of its seed)."""

    def __init__(self, crop_padding: int = 0, flip: bool = False) -> None:
        self.crop_padding = crop_padding
        self.flip = flip

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        images = random_crop(images, self.crop_padding, generator)
        return random_flip(images, generator) if self.flip else images
