"""On-device augmentation: crops are windows of the reflect-padded image, flips mirror, scaling is the blog recipe's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dim_lightning.data.transforms import random_crop, random_flip, to_signed_unit


def test_scaling_maps_uint8_to_minus_one_one() -> None:
    images = torch.tensor([0, 255, 51], dtype=torch.uint8)
    torch.testing.assert_close(to_signed_unit(images), torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))


def test_random_crop_returns_a_window_of_the_padded_image() -> None:
    images = torch.randn(6, 3, 8, 8)
    cropped = random_crop(images, padding=2, generator=torch.Generator().manual_seed(0))
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    assert cropped.shape == images.shape
    for image, window in zip(padded, cropped, strict=True):
        offsets = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(image[:, dy : dy + 8, dx : dx + 8], window)
        ]
        assert offsets, "each crop must be one window of its padded image"
    assert torch.equal(random_crop(images, padding=0), images)


def test_random_flip_mirrors_some_images_and_keeps_the_rest() -> None:
    images = torch.randn(64, 1, 4, 4)
    flipped = random_flip(images, generator=torch.Generator().manual_seed(1))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True)]
    kept = [torch.equal(f, i) for f, i in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 10 < sum(mirrored) < 54
