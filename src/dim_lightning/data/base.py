"""Shared LightningDataModule for labelled uint8 image arrays (in memory or memory-mapped caches): the three
splits, loaders, and the on-device transform hook. Batches leave the loader as uint8 and are scaled/augmented
on the device. Every data set has the same splits: `train` (what DIM and the probes are fitted on), `val` (a
seeded, class-stratified `val_fraction` of the training images, for model selection) and `test` (the official
held-out split, or a fixed stratified part set aside first; reported, never optimized; docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dim_lightning.data.batches import EpochPermutationSampler, IndexBatchSampler, collate_batch, mixed_seed, take
from dim_lightning.data.on_device import DeviceBatches, to_resident
from dim_lightning.data.resume import ResumableTrainOrder
from dim_lightning.data.transforms import DeviceAugment, to_signed_unit
from dim_lightning.errors import require
from dim_lightning.utils.cores import usable_cores
from dim_lightning.utils.timing import PhaseTimer

SPLITS = ("train", "val", "test")


def stratified_split(labels: np.ndarray, size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices (kept, rest) of a seeded split of `labels` keeping `size` items (a count, or a fraction
    in (0, 1)), class-stratified where every class can be (else a plain seeded random split)."""
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    kept_count = size if isinstance(size, int) else round(size * len(labels))
    require(
        0 < kept_count < len(labels),
        f"cannot split {len(labels)} images into {kept_count} and {len(labels) - kept_count}; "
        "change data.val_fraction / data.test_fraction (or eval.suite.max_train_images)",
    )
    counts = np.bincount(labels)[np.bincount(labels) > 0]
    can_stratify = counts.min() >= 2 and len(counts) <= min(kept_count, len(labels) - kept_count)
    stratify = labels if can_stratify else None
    kept, rest = train_test_split(index, train_size=kept_count, stratify=stratify, random_state=seed)
    return np.sort(kept), np.sort(rest)


MIN_SCORED_IMAGES = 100  # below this, one image moves a split's accuracy by more than a percentage point


def warn_if_too_small(split: str, count: int) -> None:
    """A warning when a scored split is too small to read an accuracy from (each image moves it by 1/count)."""
    if 0 < count < MIN_SCORED_IMAGES:
        fraction = "data.val_fraction" if split == "val" else "data.test_fraction"
        rank_zero_warn(
            f"the {split} split has only {count} images, so its accuracies move in steps of {100 / count:.1f}% "
            f"(one image): differences smaller than that are noise. Add images, or raise {fraction} where the "
            "data set has it"
        )


def default_num_workers(most: int = 4) -> int:
    """Loader workers when data.num_workers is null: up to `most`, never more than the CPU cores this process
    may use (more only adds processes that wait, and PyTorch warns about it)."""
    return min(most, usable_cores())


class ImageArrayDataset(Dataset):
    """uint8 images [N, C, H, W] (a numpy array, possibly memory-mapped, or a tensor) with int labels [N]."""

    def __init__(self, images: np.ndarray | Tensor, labels: np.ndarray | Tensor) -> None:
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(np.array(self.images[index], copy=True)), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """A whole batch with one index operation (PyTorch's fetcher passes the batch's index list)."""
        return take(self.images, indices), self.labels[torch.as_tensor(indices, dtype=torch.long)]

    def subset_index(self, max_images: int | None = None, seed: int = 0) -> np.ndarray:
        """Indices of every image, or of a fixed, seeded, class-stratified subset of `max_images` of them."""
        if max_images is None or max_images >= len(self):
            return np.arange(len(self))
        return stratified_split(self.labels.numpy(), int(max_images), seed)[0]

    def subset(self, max_images: int | None = None, seed: int = 0) -> ImageArrayDataset:
        """This split, or its `subset_index(max_images, seed)` images copied into a new (smaller) split."""
        if max_images is None or max_images >= len(self):
            return self
        return ImageArrayDataset(*self.__getitems__(self.subset_index(max_images, seed).tolist()))

    def all_images(self, max_images: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Every image (or the fixed stratified subset of `max_images`) as one uint8 tensor, with labels."""
        return self.__getitems__(self.subset_index(max_images, seed).tolist())

    def chunks(self, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The split's uint8 images and labels in order, `size` images at a time."""
        for start in range(0, len(self), size):
            yield self.__getitems__(list(range(start, min(start + size, len(self)))))


class ArrayDataModule(ResumableTrainOrder, pl.LightningDataModule):
    """Subclasses implement `load_arrays()` returning uint8 images [N, C, H, W] and int labels of the data
    set's training images and of its official held-out split; this class carves the selection split `val`
    (`val_fraction` of the training images, stratified, seeded by `split_seed`) from the first, serves the
    three splits and scales/augments batches once they are on the device. Subclasses that can carve more
    cheaply (before decoding files) override `load_splits()` instead."""

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | None = 0,
        crop_padding: int = 0,
        flip: bool = False,
        image_size: int = 32,
        channels: int = 3,
        shuffle_seed: int = 0,
        on_device: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.shuffle_seed = shuffle_seed
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.on_device = on_device
        self.image_size = image_size
        self.channels = channels
        self.augment = DeviceAugment(crop_padding=crop_padding, flip=flip)
        self.train_set: ImageArrayDataset | None = None
        self.val_set: ImageArrayDataset | None = None
        self.test_set: ImageArrayDataset | None = None
        self.setup_seconds: float | None = None
        self.class_names: list[str] = []
        self._augment_position = (-1, 0)  # (epoch, batch within it) of the next training batch to augment
        self._resident: tuple[Tensor, Tensor] | None = None

    def load_arrays(self) -> tuple[np.ndarray | Tensor, Any, np.ndarray | Tensor, Any]:
        """(train images, train labels, official held-out images, their labels)."""
        raise NotImplementedError

    def carve(self, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        """Indices (train, val) of the training images: the stratified, seeded selection split `val`."""
        fit, selection = stratified_split(np.asarray(labels), 1.0 - self.val_fraction, self.split_seed)
        return fit, selection

    def load_splits(self) -> dict[str, tuple[np.ndarray | Tensor, Any]]:
        """{split: (images, labels)} for train, val (carved from the training images) and test (official)."""
        train_x, train_y, test_x, test_y = self.load_arrays()
        fit, selection = self.carve(train_y)
        train_y = torch.as_tensor(np.asarray(train_y))
        return {
            "train": (take(train_x, fit), train_y[fit]),
            "val": (take(train_x, selection), train_y[selection]),
            "test": (test_x, test_y),
        }

    def setup(self, stage: str | None = None) -> None:
        """Load (decoding and caching files on first use) and check the three splits, timed as `setup_seconds`
        (`time/data_s` in metrics.json)."""
        if self.train_set is not None:
            return
        timer = PhaseTimer()
        with timer.phase("data", f"{type(self).__name__}: loading the train, val and test splits"):
            splits = self.load_splits()
        self.setup_seconds = timer.seconds["time/data_s"]
        expected = (self.channels, self.image_size, self.image_size)
        for name, (images, _) in splits.items():
            require(str(images.dtype).endswith("uint8"), f"the {name} split must hold uint8 images")
            require(
                tuple(images.shape[1:]) == expected,
                lambda images=images, name=name: (
                    f"{name} images have shape {tuple(images.shape[1:])} but the "
                    f"config says data.channels={self.channels}, data.image_size={self.image_size}; make them agree"
                ),
            )
        require(
            len(splits["train"][0]) >= self.batch_size,
            f"the train split has {len(splits['train'][0])} images, fewer than data.batch_size={self.batch_size}; "
            "lower data.batch_size",
        )
        self.train_set, self.val_set, self.test_set = (ImageArrayDataset(*splits[name]) for name in SPLITS)
        for name in ("val", "test"):
            warn_if_too_small(name, len(splits[name][1]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batches_per_epoch(self, world_size: int) -> int:
        return len(self.train_set) // world_size // self.batch_size

    def _loader(self, dataset: ImageArrayDataset, shuffle: bool, drop_last: bool, shard: bool = False) -> DataLoader:
        """Index batches (a seeded per-epoch permutation when shuffling) fetched whole by `__getitems__`;
        `shard`: this rank's share only (several processes)."""
        sampler = EpochPermutationSampler(len(dataset), seed=self.shuffle_seed, shuffle=shuffle)
        rank, world_size = self._rank_and_world_size() if shard else (0, 1)
        return DataLoader(
            dataset,
            batch_sampler=IndexBatchSampler(sampler, self.batch_size, drop_last, rank, world_size),
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        """Shuffled index batches, dropping the last partial one; with `on_device`, cut from the split
        resident on the trainer's device instead of passing through a DataLoader."""
        if not self.on_device:
            return self.resumed(self._loader(self.train_set, shuffle=True, drop_last=True, shard=True))
        strategy = self.trainer.strategy if self.trainer is not None else None
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        if self._resident is None or self._resident[0].device != device:
            images, labels = self.train_set.images, self.train_set.labels
            self._resident = (to_resident(images, device), to_resident(labels, device, "train labels"))
        sampler = EpochPermutationSampler(len(self.train_set), seed=self.shuffle_seed)
        return self.resumed(DeviceBatches(*self._resident, sampler, self.batch_size, *self._rank_and_world_size()))

    def _rank_and_world_size(self) -> tuple[int, int]:
        strategy = self.trainer.strategy if self.trainer is not None else None
        return (strategy.global_rank, strategy.world_size) if strategy is not None else (0, 1)

    def on_resume(self, epoch: int, batches_done: int) -> None:
        self._augment_position = (epoch, batches_done)  # the resumed batches get the crops and flips they would have

    def val_dataloader(self) -> DataLoader:
        """The selection split (carved from the training images); each rank scores its own shard."""
        return self._loader(self.val_set, shuffle=False, drop_last=False, shard=True)

    def test_dataloader(self) -> DataLoader:
        """The official held-out split."""
        return self._loader(self.test_set, shuffle=False, drop_last=False)

    def split(self, name: str) -> ImageArrayDataset:
        require(name in SPLITS, f"unknown split {name!r}; choose from {list(SPLITS)}")
        return {"train": self.train_set, "val": self.val_set, "test": self.test_set}[name]

    def eval_loader(self, split: str | ImageArrayDataset) -> DataLoader:
        """A deterministic loader over a whole split (a name, or a split such as a `subset`), for features."""
        dataset = self.split(split) if isinstance(split, str) else split
        return self._loader(dataset, shuffle=False, drop_last=False)

    def normalize(self, images: Tensor) -> Tensor:
        return to_signed_unit(images)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        images = self.normalize(images)
        if self.trainer is not None and self.trainer.training and self.augment.active:
            images = self.augment(images, self._augment_generator(images.device))
        return images, labels

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (shuffle_seed, epoch, batch within the epoch, rank): the same crops and flips
        for the same batch on either data path, whatever else drew from the global RNG. A mid-epoch resume
        restores `_augment_position` to continue the epoch's draws."""
        epoch, rank = self.trainer.current_epoch, self.trainer.global_rank
        batch = self._augment_position[1] if self._augment_position[0] == epoch else 0
        self._augment_position = (epoch, batch + 1)
        return torch.Generator(device=device).manual_seed(mixed_seed(self.shuffle_seed, epoch, batch, rank))
