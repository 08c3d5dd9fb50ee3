"""CIFAR-10's batch files (cifar-10-batches-py) read as files from others: checked against their documented
format before and after unpickling; anything else is one `DIMError` naming the file and the fix.

The format (https://www.cs.toronto.edu/~kriz/cifar.html): data_batch_1..5 and test_batch each pickle a dict whose
b"data" is a uint8 array of N rows of 3072 pixels (1024 red, green, blue values; N <= 10000) and whose b"labels"
are N ints in 0..9; batches.meta pickles b"label_names", the 10 class names. A batch file is about 31 MB
(30,720,000 bytes of pixels) and 30,000 pickle opcodes (a label and a file name per image), batches.meta 158
bytes: files far larger are refused before they are read, and unpickling (`pickled_arrays`) costs about the
file's size, never what a doctored file asks for.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dim_lightning.data.pickled_arrays import load_arrays
from dim_lightning.errors import DIMError, require
from dim_lightning.utils.bounded_files import describe, read_capped

BATCH_MAX_BYTES = 48 * 2**20
META_MAX_BYTES = 64 * 2**10
MAX_OPCODES = 100_000
IMAGES_PER_BATCH = 10_000
PIXELS = 3 * 32 * 32
CLASSES = 10
LONGEST_NAME = 64
FIX = (
    "download cifar-10-python.tar.gz again from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into "
    "data.root"
)


def _unpickle(path: Path, limit: int) -> Any:
    try:
        data = read_capped(path, limit)
    except OSError as error:
        raise DIMError(f"{describe(error)}, so it is not a CIFAR-10 batch file; {FIX}") from error
    try:
        return load_arrays(data, MAX_OPCODES)
    except pickle.UnpicklingError as error:
        raise DIMError(f"{path} is not a CIFAR-10 batch file ({error}); {FIX}") from error


def _shown(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _labels(labels: Any, count: int) -> np.ndarray | None:
    """`count` labels in 0..9 (a list of ints, or a 1-D integer array) as int64, else None."""
    if isinstance(labels, np.ndarray):
        fits = labels.ndim == 1 and labels.dtype.kind in "iu" and (not labels.size or labels.max() < CLASSES)
        fits = fits and (not labels.size or labels.min() >= 0)
    else:
        fits = isinstance(labels, list | tuple) and all(
            isinstance(label, int | np.integer) and not isinstance(label, bool) and 0 <= label < CLASSES
            for label in labels
        )
    return np.asarray(labels, dtype=np.int64) if fits and len(labels) == count else None


def _batch_problem(batch: Any) -> str | None:
    if not (isinstance(batch, dict) and b"data" in batch and b"labels" in batch):
        return f"it holds {_shown(batch)}, not a dict with b'data' and b'labels'"
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS):
        return f"its data are {_shown(data)}, not uint8 rows of {PIXELS} pixels"
    if not 1 <= len(data) <= IMAGES_PER_BATCH:
        return f"it holds {len(data)} images, not 1 to {IMAGES_PER_BATCH}"
    if _labels(batch[b"labels"], len(data)) is None:
        return f"its labels are not {len(data)} ints in 0..{CLASSES - 1}, one per image"
    return None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A data_batch_N or test_batch: uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    batch = _unpickle(path, BATCH_MAX_BYTES)
    problem = _batch_problem(batch)
    require(problem is None, lambda: f"{path} is not a CIFAR-10 batch file: {problem}; {FIX}")
    images = np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32)
    return images, _labels(batch[b"labels"], len(images))


def read_class_names(path: Path) -> list[str]:
    """batches.meta: the 10 class names."""
    meta = _unpickle(path, META_MAX_BYTES)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    require(
        isinstance(names, list)
        and len(names) == CLASSES
        and all(isinstance(n, bytes) and 0 < len(n) <= LONGEST_NAME and n.isascii() for n in names),
        lambda: f"{path} is not CIFAR-10's batches.meta: it holds no b'label_names' list of {CLASSES} names; {FIX}",
    )
    return [name.decode() for name in names]
