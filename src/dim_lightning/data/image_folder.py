"""A folder of class folders (root/<class>/<image>, any format PIL reads), resized to data.image_size. If
root/train and root/val both exist, root/val is the held-out `test` split; otherwise a fixed stratified
`test_fraction` of root is. Either way the model-selection split `val` is carved from the training images
(`val_fraction`, stratified, seeded by `split_seed`), before decoding: each split has its own cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dim_lightning.data.base import ArrayDataModule, stratified_split
from dim_lightning.data.file_splits import cached_file_splits
from dim_lightning.data.files import existing_root, image_files
from dim_lightning.errors import require

LAYOUT = "Expected root/<class>/<image files> (or root/train/<class>/... and root/val/<class>/...)."


def class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    require(bool(folders), f"{root} has no class folders. {LAYOUT}")
    return folders


def labelled_files(
    folder: Path, class_names: list[str], root: Path, follow_links: bool
) -> tuple[list[Path], np.ndarray]:
    """The image files of each class folder of `folder` (below the data `root`; see `image_files`), labelled."""
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_files = image_files(folder / name, LAYOUT, root, follow_links)
        files += class_files
        labels += [label] * len(class_files)
    return files, np.array(labels, dtype=np.int64)


class ImageFolderDataModule(ArrayDataModule):
    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        test_fraction: float = 0.1,
        cache_dir: str | None = None,
        skip_bad: bool = False,
        follow_links: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        self.root = existing_root(root, "image_folder", LAYOUT)
        self.test_fraction = test_fraction
        self.cache_dir = cache_dir
        self.skip_bad = skip_bad
        self.follow_links = follow_links
        self.presplit = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        self.class_names = [p.name for p in class_folders(self.root / "train" if self.presplit else self.root)]

    def _official_split(self) -> tuple[tuple[list[Path], np.ndarray], tuple[list[Path], np.ndarray]]:
        """(training files, held-out test files) with labels: root/train and root/val, or a split of root."""
        if self.presplit:
            return tuple(
                labelled_files(self.root / split, self.class_names, self.root, self.follow_links)
                for split in ("train", "val")
            )
        files, labels = labelled_files(self.root, self.class_names, self.root, self.follow_links)
        train_idx, test_idx = stratified_split(labels, 1.0 - self.test_fraction, self.split_seed)
        return ([files[i] for i in train_idx], labels[train_idx]), ([files[i] for i in test_idx], labels[test_idx])

    def load_splits(self):
        return cached_file_splits(self, *self._official_split(), "image_folder")
