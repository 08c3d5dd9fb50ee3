"""A folder of class folders (root/<class>/<image>, any format PIL reads), resized to data.image_size. If
root/train and root/val both exist they are the splits; otherwise a fixed stratified split of root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.cache import cached_splits
from dim_lightning.data.files import existing_root, image_files
from dim_lightning.errors import require

LAYOUT = "Expected root/<class>/<image files> (or root/train/<class>/... and root/val/<class>/...)."


def class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    require(bool(folders), f"{root} has no class folders. {LAYOUT}")
    return folders


def labelled_files(root: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_files = image_files(root / name, LAYOUT)
        files += class_files
        labels += [label] * len(class_files)
    return files, np.array(labels, dtype=np.int64)


class ImageFolderDataModule(ArrayDataModule):
    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        cache_dir: str | None = None,
        skip_bad: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        self.root = existing_root(root, "image_folder", LAYOUT)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.cache_dir = cache_dir
        self.skip_bad = skip_bad
        self.presplit = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        self.class_names = [p.name for p in class_folders(self.root / "train" if self.presplit else self.root)]

    def _split_files(self) -> dict[str, tuple[list[Path], np.ndarray]]:
        if self.presplit:
            return {split: labelled_files(self.root / split, self.class_names) for split in ("train", "val")}
        files, labels = labelled_files(self.root, self.class_names)
        train_idx, val_idx = train_test_split(
            np.arange(len(files)), test_size=self.val_fraction, stratify=labels, random_state=self.split_seed
        )
        return {
            split: ([files[i] for i in idx], labels[idx]) for split, idx in (("train", train_idx), ("val", val_idx))
        }

    def load_arrays(self):
        splits = self._split_files().items()
        return cached_splits(splits, self.root, self.cache_dir, "image_folder", self.image_size, self.skip_bad)
