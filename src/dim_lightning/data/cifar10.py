"""CIFAR-10 in its `cifar-10-batches-py` pickled format: data_batch_1..5 train, test_batch is the val split.
Resized from 32 px to `data.image_size` (bilinear, antialiased) when that differs, as the other data sets are.

The batch files are Python pickles; they are read with an unpickler that builds only what those files hold
(dicts, lists, bytes, numpy uint8 arrays), so a doctored batch file cannot run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.data.files import existing_root, required_file
from dim_lightning.errors import DIMError, require

LAYOUT = "Expected cifar-10-batches-py/ with data_batch_1 ... data_batch_5, test_batch and batches.meta."
NATIVE_SIZE = 32

# What the batch files pickle besides builtins: numpy arrays (numpy 1 and 2 module names, protocols 2-5) and,
# for bytes pickled by Python 3 at protocol 2, `_codecs.encode`.
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Builds only `BATCH_GLOBALS`; any other global (os.system, ...) is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as file:
            return _BatchUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DIMError(f"{path} is not a CIFAR-10 batch file ({error}); download the data set again") from error


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
    def __init__(self, root: str | None = None, image_size: int = NATIVE_SIZE, **kwargs) -> None:
        super().__init__(image_size=image_size, channels=3, **kwargs)
        root_path = existing_root(root, "cifar10", LAYOUT)
        nested = root_path / "cifar-10-batches-py"
        self.folder = nested if nested.is_dir() else root_path
        meta = _unpickle(required_file(self.folder / "batches.meta", LAYOUT))
        self.class_names = [name.decode() for name in meta[b"label_names"]]

    def _batches(self, names: list[str]) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
        images, labels = [], []
        for name in names:
            batch = _unpickle(required_file(self.folder / name, LAYOUT))
            require(b"data" in batch and b"labels" in batch, f"{self.folder / name} lacks data/labels. {LAYOUT}")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        images = np.concatenate(images)
        return (images if self.image_size == NATIVE_SIZE else resized(images, self.image_size)), np.concatenate(labels)

    def load_arrays(self):
        train_x, train_y = self._batches([f"data_batch_{i}" for i in range(1, 6)])
        val_x, val_y = self._batches(["test_batch"])
        return train_x, train_y, val_x, val_y
