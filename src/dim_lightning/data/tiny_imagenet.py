"""Tiny-ImageNet-200 as downloaded. Our splits: `train` and the model-selection split `val` are carved from
train/ (`data.val_fraction`, stratified, seeded); the labelled official val/ (val_annotations.txt) is our `test`
split, reported beside the selection numbers and never optimized; test/ has no labels and is not used. The
carving is done on the file lists, so each split is decoded once into its own memory-mapped uint8 cache
(see `cache`) and nothing is copied in memory."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.file_splits import cached_file_splits
from dim_lightning.data.files import existing_root, image_files, read_text, required_file
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
        follow_links: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        self.root = existing_root(root, "tiny_imagenet", LAYOUT)
        self.cache_dir = cache_dir
        self.skip_bad = skip_bad
        self.follow_links = follow_links
        self.wnids = read_text(required_file(self.root / "wnids.txt", LAYOUT), LAYOUT).split()
        require(bool(self.wnids), f"{self.root / 'wnids.txt'} lists no classes. {LAYOUT}")
        named = [wnid for wnid in self.wnids if wnid in (".", "..") or any(c in wnid for c in "/\\\0")]
        require(
            not named,
            lambda: (
                f"{self.root / 'wnids.txt'} lists {named[0][:100]!r}, a path, not a class folder's name: its "
                f"images would be read from outside the data folder. {LAYOUT}"
            ),
        )
        repeated = sorted(wnid for wnid, count in Counter(self.wnids).items() if count > 1)
        require(
            not repeated,
            f"{self.root / 'wnids.txt'} lists {', '.join(repeated[:3])[:200]} more than once: its images would be "
            f"read under two labels. {LAYOUT}",
        )
        self.class_names = self._class_names()

    def _class_names(self) -> list[str]:
        """Readable names from words.txt ("wnid<TAB>name, synonym, ..."); the wnid where a name is missing."""
        words_file = self.root / "words.txt"
        words = {}
        if words_file.is_file():
            for line in read_text(words_file, LAYOUT).splitlines():
                wnid, _, names = line.partition("\t")
                words[wnid] = names.split(",")[0].strip()
        return [words.get(wnid, wnid) for wnid in self.wnids]

    def train_files(self) -> tuple[list[Path], np.ndarray]:
        files, labels = [], []
        for label, wnid in enumerate(self.wnids):
            class_files = image_files(self.root / "train" / wnid / "images", LAYOUT, self.root, self.follow_links)
            files += class_files
            labels += [label] * len(class_files)
        return files, np.array(labels, dtype=np.int64)

    def val_files(self) -> tuple[list[Path], np.ndarray]:
        annotations = required_file(self.root / "val" / "val_annotations.txt", LAYOUT)
        label_of = {wnid: i for i, wnid in enumerate(self.wnids)}
        wnid_of = {}
        for number, line in enumerate(read_text(annotations, LAYOUT).splitlines(), start=1):
            if line.strip():
                name, wnid = [*line.split("\t"), ""][:2]
                require(wnid in label_of, f"{annotations}:{number}: class {wnid[:80]!r} is not in wnids.txt. {LAYOUT}")
                wnid_of[name] = wnid
        files = image_files(self.root / "val" / "images", LAYOUT, self.root, self.follow_links)
        unlabelled = [p.name for p in files if p.name not in wnid_of]
        require(
            not unlabelled,
            lambda: (
                f"{len(unlabelled)} file(s) in {self.root / 'val' / 'images'} have no line in {annotations}, "
                f"e.g. {unlabelled[0]}; add their labels or remove them"
            ),
        )
        return files, np.array([label_of[wnid_of[p.name]] for p in files], dtype=np.int64)

    def load_splits(self):
        return cached_file_splits(self, self.train_files(), self.val_files(), "tiny_imagenet")
