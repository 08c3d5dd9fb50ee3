"""CIFAR-10 in its `cifar-10-batches-py` pickled format: data_batch_1..5 train, test_batch is the val split."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.files import existing_root, required_file
from dim_lightning.errors import DIMError, require

LAYOUT = "Expected cifar-10-batches-py/ with data_batch_1 ... data_batch_5, test_batch and batches.meta."


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as file:
            return pickle.load(file, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DIMError(f"{path} is not a CIFAR-10 batch file ({error}); download the data set again") from error


class CIFAR10DataModule(ArrayDataModule):
    def __init__(self, root: str | None = None, **kwargs) -> None:
        kwargs.pop("image_size", None)
        super().__init__(image_size=32, channels=3, **kwargs)
        root_path = existing_root(root, "cifar10", LAYOUT)
        nested = root_path / "cifar-10-batches-py"
        self.folder = nested if nested.is_dir() else root_path
        meta = _unpickle(required_file(self.folder / "batches.meta", LAYOUT))
        self.class_names = [name.decode() for name in meta[b"label_names"]]

    def _batches(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            batch = _unpickle(required_file(self.folder / name, LAYOUT))
            require(b"data" in batch and b"labels" in batch, f"{self.folder / name} lacks data/labels. {LAYOUT}")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)

    def load_arrays(self):
        train_x, train_y = self._batches([f"data_batch_{i}" for i in range(1, 6)])
        val_x, val_y = self._batches(["test_batch"])
        return train_x, train_y, val_x, val_y
