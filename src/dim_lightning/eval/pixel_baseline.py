"""The raw-pixel baseline: the linear probe on the images' pixels, the bar a learned code must clear. It depends only
on the images, their labels, the seed and the cap on its train images, yet it is the slowest evaluation phase, so
its numbers are cached per user and every later run on the same data (each job of a sweep) reads them back:
`<cache>/dim-lightning/baselines/<key>.json`, <cache> being $XDG_CACHE_HOME or ~/.cache, the key a hash of
everything the numbers depend on (`CACHE_VERSION` changes with the procedure)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from dim_lightning import __version__
from dim_lightning.data.base import ImageArrayDataset, stratified_split
from dim_lightning.eval.features import flat_pixels
from dim_lightning.eval.probe import fit_linear_probe, num_classes_of
from dim_lightning.utils.atomic import atomic_write_text
from dim_lightning.utils.bounded_files import read_capped
from dim_lightning.utils.user_cache import user_cache_dir

PIXEL_IMAGES = 20000  # the most training images whose raw pixels the probe holds as floats
CACHE_VERSION = 2  # 2: test scored by the probe refitted on train + val
CACHE_FILE_BYTES = 4096  # a cached entry is a few dozen bytes
HASH_CHUNK = 4096  # images hashed at a time
CACHED_NOTE = "Pixel baseline: the same data's numbers, read from"


def cache_dir() -> Path:
    return user_cache_dir("baselines")


def data_key(datamodule, train_set: ImageArrayDataset, seed: int, max_pixel_images: int) -> str:
    """A hash of what the pixel baseline's numbers depend on: every image and label of the three splits, the
    scaling of pixels, the seed, the cap and the procedure's version."""
    versions = f"v{CACHE_VERSION} dim-lightning {__version__} torch {torch.__version__}"
    digest = hashlib.sha256(
        f"{versions} seed={seed} max={max_pixel_images} {datamodule.normalize.__qualname__}".encode()
    )
    for name, dataset in (("train", train_set), ("val", datamodule.split("val")), ("test", datamodule.split("test"))):
        digest.update(f"{name} {len(dataset)}".encode())
        for images, labels in dataset.chunks(HASH_CHUNK):
            digest.update(f"{tuple(images.shape)} {images.dtype}".encode())
            digest.update(images.numpy().tobytes())
            digest.update(labels.numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def cached_scores(key: str) -> dict[str, float] | None:
    """The scores stored under `key`, or None when there are none or the file is not what this module writes."""
    try:
        scores = json.loads(read_capped(cache_dir() / f"{key}.json", CACHE_FILE_BYTES))
    except Exception:  # missing, unreadable, not JSON, no home folder: computed instead
        return None
    usable = isinstance(scores, dict) and set(scores) == {"val", "test"}
    if not usable or not all(isinstance(v, float) and 0.0 <= v <= 1.0 and math.isfinite(v) for v in scores.values()):
        return None
    return scores


def store_scores(key: str, scores: dict[str, float]) -> None:
    """Keep `scores` under `key`; a cache that cannot be written (read-only or full home folder, no home) is
    skipped with a log line: the numbers are already computed, the run goes on."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_dir() / f"{key}.json", json.dumps(scores))
    except Exception as error:
        rank_zero_info(f"Pixel baseline: not cached ({str(error).splitlines()[0][:200]})")


def training_pixels(datasets: list[ImageArrayDataset], max_images: int, seed: int) -> tuple[Tensor, Tensor]:
    """The uint8 images and labels of `datasets` together, or a fixed stratified subset of `max_images` of them."""
    labels = torch.cat([d.labels for d in datasets])
    keep = torch.ones(len(labels), dtype=torch.bool)
    if len(labels) > max_images:
        keep[:] = False
        keep[torch.from_numpy(stratified_split(labels.numpy(), max_images, seed)[0])] = True
    parts, start = [], 0
    for dataset in datasets:
        index = torch.nonzero(keep[start : start + len(dataset)]).flatten().tolist()
        parts.append(dataset.__getitems__(index))
        start += len(dataset)
    return torch.cat([images for images, _ in parts]), torch.cat([y for _, y in parts])


def pixel_probe_scores(
    datamodule,
    train_set: ImageArrayDataset,
    seed: int = 0,
    max_pixel_images: int = PIXEL_IMAGES,
    chunk_size: int = 1000,
    cache: bool = True,
) -> dict[str, float]:
    """{split: accuracy} of the linear probe on raw pixels: val by the probe fitted on `train_set`, test by the
    probe refitted on `train_set` + val (at most `max_pixel_images` of them, a fixed stratified subset: raw pixels
    of a large set do not fit in memory as floats), each split scored whole, chunk by chunk, so only the train
    pixels are ever held as floats. Cached unless `cache=False` (module doc)."""
    key = data_key(datamodule, train_set, seed, max_pixel_images) if cache else None
    cached = cached_scores(key) if key else None
    if cached is not None:
        rank_zero_info(f"{CACHED_NOTE} {cache_dir() / key}.json")
        return cached
    normalize = datamodule.normalize
    fits = {"val": [train_set], "test": [train_set, datamodule.split("val")]}
    scores = {}
    for split, datasets in fits.items():
        images, labels = training_pixels(datasets, max_pixel_images, seed)
        num_classes = max(getattr(datamodule, "num_classes", 0), num_classes_of(labels))
        pixels = flat_pixels(images, normalize)
        del images
        probe = fit_linear_probe(pixels, labels, num_classes, seed, f"linear probe pixels ({split})", True)
        del pixels
        dataset = datamodule.split(split)
        correct = sum(probe.correct(flat_pixels(x, normalize), y) for x, y in dataset.chunks(chunk_size))
        scores[split] = correct / len(dataset)
    if key:
        store_scores(key, scores)
    return scores
