"""The built-in data set: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download),
upscaled to `image_size` with bilinear interpolation, with a fixed stratified train/val split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import require


class DigitsDataModule(ArrayDataModule):
    def __init__(self, image_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0, **kwargs) -> None:
        require(0.0 < val_fraction < 1.0, f"data.val_fraction must be in (0, 1), got {val_fraction}")
        require(image_size >= 8, f"data.image_size must be at least 8 for the 8x8 digits, got {image_size}")
        super().__init__(image_size=image_size, channels=1, **kwargs)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.class_names = [str(d) for d in range(10)]

    def load_arrays(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        digits = load_digits()
        pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in 0..1
        upscaled = F.interpolate(pixels, size=self.image_size, mode="bilinear", align_corners=False)
        images = upscaled.mul(255).round().clamp(0, 255).to(torch.uint8)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        train_idx, val_idx = train_test_split(
            np.arange(len(labels)),
            test_size=self.val_fraction,
            stratify=labels.numpy(),
            random_state=self.split_seed,
        )
        train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
