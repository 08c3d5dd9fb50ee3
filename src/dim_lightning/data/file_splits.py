"""The three splits of a file-based data module (Tiny-ImageNet, image folders): the selection split `val`
carved from the training files before anything is decoded, so each split is decoded once into its own
memory-mapped cache and no split is copied in memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dim_lightning.data.cache import cached_splits

LabelledFiles = tuple[Sequence[Path], np.ndarray]


def cached_file_splits(datamodule, train: LabelledFiles, test: LabelledFiles, name: str) -> dict[str, tuple]:
    """{train, val, test: (uint8 images, labels)}: `val` carved from the `train` files (`datamodule.carve`),
    `test` the official held-out files; each split cached (`cached_splits`) under data.cache_dir."""
    files, labels = train
    fit, selection = datamodule.carve(labels)
    splits = {
        "train": ([files[i] for i in fit], labels[fit]),
        "val": ([files[i] for i in selection], labels[selection]),
        "test": test,
    }
    arrays = cached_splits(
        splits.items(), datamodule.root, datamodule.cache_dir, name, datamodule.image_size, datamodule.skip_bad
    )
    return {split: (arrays[2 * i], arrays[2 * i + 1]) for i, split in enumerate(splits)}
