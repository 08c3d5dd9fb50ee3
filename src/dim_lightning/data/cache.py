"""Decode a list of image files once into a uint8 array cache, memory-mapped by every later run and every
loader worker. A JSON fingerprint beside it (each file's relative path and size, the image size) says what it
was built from; a different one rebuilds it. A cache can come with a data folder from someone else, so one
whose fingerprint matches is still checked against what it must hold before use (`_checked`), and rebuilt with
a warning that says why when it fails."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.utilities import rank_zero_info

from dim_lightning.data.decode import MAX_PIXELS, TOO_LARGE_FIX, UnusableImage, decode_image
from dim_lightning.data.files import cache_folder
from dim_lightning.errors import DIMError
from dim_lightning.utils.atomic import atomic_write, atomic_write_text
from dim_lightning.utils.bounded_files import describe, read_capped
from dim_lightning.utils.timing import progress

DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))  # what they decode at once: `decode.BUDGET`


def fingerprint(files: Sequence[Path], root: Path, image_size: int) -> str:
    digest = hashlib.sha256(f"image_size={image_size}\n".encode())
    for path in files:
        digest.update(f"{path.relative_to(root)}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _kept_problem(kept: Any, count: int) -> str | None:
    if not (isinstance(kept, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in kept)):
        return "its kept indices are not a list of ints"
    if any(not 0 <= i < count for i in kept) or any(a >= b for a, b in itertools.pairwise(kept)):
        return f"its kept indices are not strictly increasing in 0..{count - 1}"
    return None


def _checked(cache_file: Path, meta: dict, count: int, image_size: int) -> tuple[np.ndarray, np.ndarray] | str:
    """The cache's (images, kept), or what is wrong with it: `kept` must be a strictly increasing list of ints
    in range, and the .npy a regular file (no link) that numpy opens as uint8 [len(kept), 3, S, S]."""
    problem = _kept_problem(meta.get("kept"), count)
    if problem:
        return problem
    try:
        if not stat.S_ISREG(os.lstat(cache_file).st_mode):
            return f"{cache_file.name} is not a regular file"
        images = np.load(cache_file, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        return f"numpy cannot open {cache_file.name} ({error})"
    expected = (len(meta["kept"]), 3, image_size, image_size)
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape == expected):
        return f"{cache_file.name} is not uint8 images of shape {expected}"
    return images, np.asarray(meta["kept"], dtype=np.int64)


def _open_cache(cache_file: Path, key: str, count: int, image_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cache's (images, kept) if its fingerprint is `key` and it holds what it must; else None (a warning
    when it claims the fingerprint, or its JSON file cannot be read)."""
    meta_file = cache_file.with_suffix(".json")
    if not (meta_file.exists() or meta_file.is_symlink()):
        return None
    try:
        meta = json.loads(read_capped(meta_file, 4096 + 16 * count, follow_symlinks=False))
    except (OSError, ValueError, RecursionError) as error:
        problem = describe(error) if isinstance(error, OSError) else f"{meta_file} is not JSON ({error})"
    else:
        if not isinstance(meta, dict) or meta.get("fingerprint") != key:
            return None  # built from other files: rebuilt without a word, as always
        opened = _checked(cache_file, meta, count, image_size)
        if not isinstance(opened, str):
            return opened
        problem = opened
    warnings.warn(f"The image cache {cache_file} is not usable ({problem}); rebuilding it", stacklevel=3)
    return None


def cached_images(
    files: Sequence[Path], root: Path, cache_file: Path, image_size: int, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 3, S, S] memory-mapped from `cache_file` (built first if missing, stale or not what it
    must be), and the indices into `files` that they hold. A file PIL cannot read (or too large to decode,
    `decode`) is an error naming it or, with `skip_bad`, left out with one warning that lists them.
    `cache_file`'s folder must exist (`files.cache_folder`)."""
    cache_file = Path(cache_file)
    key = fingerprint(files, root, image_size)
    cached = _open_cache(cache_file, key, len(files), image_size)
    if cached is not None:
        return cached
    rank_zero_info(
        f"Decoding {len(files):,} images of {root} once into {cache_file} (data.cache_dir chooses the folder); "
        "later runs memory-map it"
    )
    images, kept = _decode_all(files, image_size, skip_bad, desc=f"Decoding {len(files)} images -> {cache_file.name}")
    meta = json.dumps({"fingerprint": key, "image_size": image_size, "kept": kept.tolist()})
    try:  # the images first, the fingerprint last: an interrupted build leaves nothing that looks valid
        atomic_write(cache_file, lambda file: np.save(file, images))
        atomic_write_text(cache_file.with_suffix(".json"), meta)
    except OSError as error:
        raise DIMError(
            f"cannot write the image cache {cache_file} ({error}); set data.cache_dir to a folder of yours"
        ) from error
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
    folder = cache_folder(cache_dir, root)
    arrays: list[np.ndarray] = []
    for split, (files, labels) in splits:
        images, kept = cached_images(files, root, folder / f"{name}_{split}_{image_size}.npy", image_size, skip_bad)
        arrays += [images, labels[kept]]
    return tuple(arrays)


def _decoded(path: Path, image_size: int) -> np.ndarray | UnusableImage:
    try:
        return decode_image(path, image_size)
    except UnusableImage as error:
        return error


def _listed(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _bad_files_message(bad: list[UnusableImage]) -> str:
    unreadable = [error.path for error in bad if not error.too_large]
    too_large = [error.path for error in bad if error.too_large]
    parts = [f"{len(unreadable)} image file(s) could not be read: {_listed(unreadable)}"] if unreadable else []
    if too_large:
        parts.append(f"{len(too_large)} image file(s) have more than {MAX_PIXELS} pixels: {_listed(too_large)}")
    return "; ".join(parts)


def _decode_all(files: Sequence[Path], image_size: int, skip_bad: bool, desc: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    bad: list[UnusableImage] = []
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        decoded = pool.map(lambda path: _decoded(path, image_size), files)
        for index, image in enumerate(progress(decoded, len(files), desc)):
            if isinstance(image, UnusableImage):
                bad.append(image)
            else:
                images[index] = image
    too_large = f" ({TOO_LARGE_FIX})" if any(error.too_large for error in bad) else ""
    if bad and not skip_bad:
        raise DIMError(
            f"{_bad_files_message(bad)}{too_large}. Replace or delete them, or pass data.skip_bad=true to leave them "
            "out (nothing was cached)"
        )
    if bad:
        warnings.warn(f"Skipped (data.skip_bad=true): {_bad_files_message(bad)}{too_large}", stacklevel=2)
    bad_set = {error.path for error in bad}
    kept = np.array([i for i, path in enumerate(files) if path not in bad_set], dtype=np.int64)
    return (images[kept] if bad else images), kept
