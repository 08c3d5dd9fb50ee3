"""CIFAR-10 in its `cifar-10-batches-py` pickled format: data_batch_1..5 train, test_batch is the val split.
Resized from 32 px to `data.image_size` (bilinear, antialiased) when that differs, as the other data sets are.

The batch files are Python pickles from others: `cifar10_batches` reads them without running code, at a cost
bounded by what a real batch file needs, and checks them against their documented format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.cifar10_batches import read_batch, read_class_names
from dim_lightning.data.files import existing_root, refuse_link, required_file

LAYOUT = "Expected cifar-10-batches-py/ with data_batch_1 ... data_batch_5, test_batch and batches.meta."
NATIVE_SIZE = 32


def resized(images: np.ndarray, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size], bilinear (antialiased when shrinking), in chunks so the
    float copy stays small."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in tqdm(range(0, len(images), chunk), desc=f"Resizing {len(images)} images to {size}px", leave=False):
        block = torch.from_numpy(images[start : start + chunk]).float()
        block = F.interpolate(block, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


class CIFAR10DataModule(ArrayDataModule):
    def __init__(
        self, root: str | None = None, image_size: int = NATIVE_SIZE, follow_links: bool = False, **kwargs
    ) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        root_path = existing_root(root, "cifar10", LAYOUT)
        self.follow_links = follow_links
        nested = root_path / "cifar-10-batches-py"
        self.folder = self._unlinked(nested) if nested.is_dir() else root_path
        self.class_names = read_class_names(self._unlinked(required_file(self.folder / "batches.meta", LAYOUT)))

    def _unlinked(self, path: Path) -> Path:
        """`path`, refused if it is a symbolic link (unless `follow_links`: see `files.refuse_link`)."""
        if not self.follow_links:
            refuse_link(path)
        return path

    def _batches(self, names: list[str]) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
        images, labels = [], []
        for name in names:
            batch_images, batch_labels = read_batch(self._unlinked(required_file(self.folder / name, LAYOUT)))
            images.append(batch_images)
            labels.append(batch_labels)
        images = np.concatenate(images)
        return (images if self.image_size == NATIVE_SIZE else resized(images, self.image_size)), np.concatenate(labels)

    def load_arrays(self):
        train_x, train_y = self._batches([f"data_batch_{i}" for i in range(1, 6)])
        val_x, val_y = self._batches(["test_batch"])
        return train_x, train_y, val_x, val_y
