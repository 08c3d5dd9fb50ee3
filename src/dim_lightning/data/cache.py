"""Decode a list of image files once into a uint8 array cache, memory-mapped by every later run and every
loader worker.

The cache lives beside a small JSON fingerprint of what it was built from (each file's relative path and
size, the image size); a different fingerprint rebuilds it. Both files are written under temporary names
and renamed into place, the fingerprint last, so an interrupted build leaves no cache that looks valid.
Files PIL cannot read are an error naming them, or, with `skip_bad`, left out with one warning that lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from dim_lightning.data.files import cache_path
from dim_lightning.errors import DIMError
from dim_lightning.utils.atomic import atomic_write, atomic_write_text

DECODE_THREADS = max(1, min(8, os.cpu_count() or 1))


def decode_image(path: Path, image_size: int) -> np.ndarray | None:
    """One file -> uint8 [3, S, S] (grayscale and palette images converted to RGB), or None if unreadable."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def fingerprint(files: Sequence[Path], root: Path, image_size: int) -> str:
    digest = hashlib.sha256(f"image_size={image_size}\n".encode())
    for path in files:
        digest.update(f"{path.relative_to(root)}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _bad_files_message(bad: list[Path]) -> str:
    shown = ", ".join(str(p) for p in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return f"{len(bad)} image file(s) could not be read: {shown}"


def cached_images(
    files: Sequence[Path], root: Path, cache_file: Path, image_size: int, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 3, S, S] memory-mapped from `cache_file` (built first if missing or stale), and the
    indices into `files` that they hold (all of them unless `skip_bad` dropped unreadable ones)."""
    cache_file = Path(cache_file)
    meta_file = cache_file.with_suffix(".json")
    key = fingerprint(files, root, image_size)
    if meta_file.is_file() and cache_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("fingerprint") == key:
            return np.load(cache_file, mmap_mode="r"), np.asarray(meta["kept"], dtype=np.int64)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    images, kept = _decode_all(files, image_size, skip_bad, desc=f"Decoding {len(files)} images -> {cache_file.name}")
    # The images first, the fingerprint last: an interrupted build leaves nothing that looks valid.
    atomic_write(cache_file, lambda file: np.save(file, images))
    atomic_write_text(meta_file, json.dumps({"fingerprint": key, "image_size": image_size, "kept": kept.tolist()}))
    return np.load(cache_file, mmap_mode="r"), kept


def cached_splits(
    splits: Iterable[tuple[str, tuple[Sequence[Path], np.ndarray]]],
    root: Path,
    cache_dir: str | Path | None,
    name: str,
    image_size: int,
    skip_bad: bool = False,
) -> tuple[np.ndarray, ...]:
    """For each (split, (files, labels)): its cached images and the labels of the images kept, in order,
    one cache file per split (`<name>_<split>_<image_size>.npy` under data.cache_dir)."""
    arrays: list[np.ndarray] = []
    for split, (files, labels) in splits:
        cache = cache_path(cache_dir, root, f"{name}_{split}_{image_size}.npy")
        images, kept = cached_images(files, root, cache, image_size, skip_bad)
        arrays += [images, labels[kept]]
    return tuple(arrays)


def _decode_all(files: Sequence[Path], image_size: int, skip_bad: bool, desc: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    bad: list[Path] = []
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        decoded = pool.map(lambda path: decode_image(path, image_size), files)
        for index, image in enumerate(track(decoded, total=len(files), description=desc, transient=True)):
            if image is None:
                bad.append(files[index])
            else:
                images[index] = image
    if bad and not skip_bad:
        raise DIMError(
            f"{_bad_files_message(bad)}. Replace or delete them, or pass data.skip_bad=true to leave them out "
            "(nothing was cached)"
        )
    if bad:
        warnings.warn(f"Skipped (data.skip_bad=true): {_bad_files_message(bad)}", stacklevel=2)
    bad_set = set(bad)
    kept = np.array([i for i, path in enumerate(files) if path not in bad_set], dtype=np.int64)
    return (images[kept] if bad else images), kept
