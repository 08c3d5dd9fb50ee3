"""The built-in data set: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download),
upscaled to `image_size` with bilinear interpolation. Having no official split, it sets a fixed stratified
`test_fraction` aside as its `test` split first; the selection split `val` is carved from the rest (base)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor

from dim_lightning.data.base import ArrayDataModule, stratified_split
from dim_lightning.errors import require


class DigitsDataModule(ArrayDataModule):
    def __init__(self, image_size: int = 32, test_fraction: float = 0.2, **kwargs) -> None:
        require(image_size >= 8, f"data.image_size must be at least 8 for the 8x8 digits, got {image_size}")
        super().__init__(image_size=image_size, channels=1, **kwargs)
        self.test_fraction = test_fraction
        self.class_names = [str(d) for d in range(10)]

    def load_arrays(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        digits = load_digits()
        pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in 0..1
        upscaled = F.interpolate(pixels, size=self.image_size, mode="bilinear", align_corners=False)
        images = upscaled.mul(255).round().clamp(0, 255).to(torch.uint8)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        train_idx, test_idx = (
            torch.from_numpy(i) for i in stratified_split(labels.numpy(), 1.0 - self.test_fraction, self.split_seed)
        )
        return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
