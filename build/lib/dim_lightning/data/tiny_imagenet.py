"""Tiny-ImageNet-200 as downloaded: train/ is the training split, val/ (with val_annotations.txt) the labelled
validation split used by the probes; test/ has no labels and is not used. Images are decoded once into a
uint8 cache (see `cache`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.cache import cached_splits
from dim_lightning.data.files import existing_root, image_files, required_file
from dim_lightning.errors import require

LAYOUT = (
    "Expected the tiny-imagenet-200 layout: wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG with val/val_annotations.txt (file, wnid, box per line)."
)


class TinyImageNetDataModule(ArrayDataModule):
    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        cache_dir: str | None = None,
        skip_bad: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        self.root = existing_root(root, "tiny_imagenet", LAYOUT)
        self.cache_dir = cache_dir
        self.skip_bad = skip_bad
        self.wnids = required_file(self.root / "wnids.txt", LAYOUT).read_text().split()
        require(bool(self.wnids), f"{self.root / 'wnids.txt'} lists no classes. {LAYOUT}")
        self.class_names = self._class_names()

    def _class_names(self) -> list[str]:
        """Readable names from words.txt ("wnid<TAB>name, synonym, ..."); the wnid where a name is missing."""
        words_file = self.root / "words.txt"
        words = {}
        if words_file.is_file():
            for line in words_file.read_text().splitlines():
                wnid, _, names = line.partition("\t")
                words[wnid] = names.split(",")[0].strip()
        return [words.get(wnid, wnid) for wnid in self.wnids]

    def train_files(self) -> tuple[list[Path], np.ndarray]:
        files, labels = [], []
        for label, wnid in enumerate(self.wnids):
            class_files = image_files(self.root / "train" / wnid / "images", LAYOUT)
            files += class_files
            labels += [label] * len(class_files)
        return files, np.array(labels, dtype=np.int64)

    def val_files(self) -> tuple[list[Path], np.ndarray]:
        annotations = required_file(self.root / "val" / "val_annotations.txt", LAYOUT)
        label_of = {wnid: i for i, wnid in enumerate(self.wnids)}
        wnid_of = {}
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if line.strip():
                name, wnid = line.split("\t")[:2]
                require(wnid in label_of, f"{annotations}:{number}: class {wnid} is not in wnids.txt")
                wnid_of[name] = wnid
        files = image_files(self.root / "val" / "images", LAYOUT)
        unlabelled = [p.name for p in files if p.name not in wnid_of]
        require(
            not unlabelled,
            lambda: (
                f"{len(unlabelled)} file(s) in {self.root / 'val' / 'images'} have no line in {annotations}, "
                f"e.g. {unlabelled[0]}; add their labels or remove them"
            ),
        )
        return files, np.array([label_of[wnid_of[p.name]] for p in files], dtype=np.int64)

    def load_arrays(self):
        splits = (("train", self.train_files()), ("val", self.val_files()))
        return cached_splits(splits, self.root, self.cache_dir, "tiny_imagenet", self.image_size, self.skip_bad)
