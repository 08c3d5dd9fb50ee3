"""Shared LightningDataModule for labelled uint8 image arrays (in memory or memory-mapped caches): loaders,
and the on-device transform hook. Batches leave the loader as uint8 and are scaled/augmented on the device."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dim_lightning.data.batches import EpochPermutationSampler, IndexBatchSampler, collate_batch, mixed_seed, take
from dim_lightning.data.on_device import DeviceBatches, to_resident
from dim_lightning.data.resume import ResumableTrainOrder
from dim_lightning.data.transforms import DeviceAugment, to_signed_unit
from dim_lightning.errors import require


def default_num_workers(most: int = 4) -> int:
    """Loader workers when data.num_workers is null: up to `most`, never more than the CPU cores this process
    may use (more only adds processes that wait, and PyTorch warns about it)."""
    return min(most, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


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

    def all_images(self, max_images: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Every image (or a fixed random subset of `max_images`) as one uint8 tensor, with labels."""
        index = np.arange(len(self))
        if max_images is not None and len(index) > max_images:
            index = np.sort(np.random.default_rng(seed).choice(index, max_images, replace=False))
        return torch.from_numpy(np.array(self.images[index], copy=True)), self.labels[index]


class ArrayDataModule(ResumableTrainOrder, pl.LightningDataModule):
    """Subclasses implement `load_arrays()` returning uint8 images [N, C, H, W] and int labels for the train
    and val splits; this class serves them and scales/augments batches once they are on the device."""

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
    ) -> None:
        super().__init__()
        require(
            batch_size >= 2, f"data.batch_size must be at least 2 (negatives come from the batch), got {batch_size}"
        )
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.shuffle_seed = shuffle_seed
        self.on_device = on_device
        self.image_size = image_size
        self.channels = channels
        self.augment = DeviceAugment(crop_padding=crop_padding, flip=flip)
        self.train_set: ImageArrayDataset | None = None
        self.val_set: ImageArrayDataset | None = None
        self.class_names: list[str] = []
        self._augment_position = (-1, 0)  # (epoch, batch within it) of the next training batch to augment
        self._resident: tuple[Tensor, Tensor] | None = None

    def load_arrays(self) -> tuple[np.ndarray | Tensor, Any, np.ndarray | Tensor, Any]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_x, train_y, val_x, val_y = self.load_arrays()
        expected = (self.channels, self.image_size, self.image_size)
        for name, images in (("train", train_x), ("val", val_x)):
            require(str(images.dtype).endswith("uint8"), f"the {name} split must hold uint8 images")
            require(
                tuple(images.shape[1:]) == expected,
                lambda images=images, name=name: (
                    f"{name} images have shape {tuple(images.shape[1:])} but the "
                    f"config says data.channels={self.channels}, data.image_size={self.image_size}; make them agree"
                ),
            )
        require(
            len(train_x) >= self.batch_size,
            f"the train split has {len(train_x)} images, fewer than data.batch_size={self.batch_size}; "
            "lower data.batch_size",
        )
        self.train_set = ImageArrayDataset(train_x, train_y)
        self.val_set = ImageArrayDataset(val_x, val_y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _loader(self, dataset: ImageArrayDataset, shuffle: bool, drop_last: bool) -> DataLoader:
        """Index batches (a seeded per-epoch permutation when shuffling) fetched whole by `__getitems__`."""
        sampler = EpochPermutationSampler(len(dataset), seed=self.shuffle_seed, shuffle=shuffle)
        return DataLoader(
            dataset,
            batch_sampler=IndexBatchSampler(sampler, batch_size=self.batch_size, drop_last=drop_last),
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        """Shuffled index batches, dropping the last partial one; with `on_device`, cut from the split
        resident on the trainer's device instead of passing through a DataLoader."""
        if not self.on_device:
            return self.resumed(self._loader(self.train_set, shuffle=True, drop_last=True))
        strategy = self.trainer.strategy if self.trainer is not None else None
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        if self._resident is None or self._resident[0].device != device:
            images, labels = self.train_set.images, self.train_set.labels
            self._resident = (to_resident(images, device), to_resident(labels, device, "train labels"))
        sampler = EpochPermutationSampler(len(self.train_set), seed=self.shuffle_seed)
        rank, world_size = (strategy.global_rank, strategy.world_size) if strategy is not None else (0, 1)
        return self.resumed(DeviceBatches(*self._resident, sampler, self.batch_size, rank, world_size))

    def on_resume(self, epoch: int, batches_done: int) -> None:
        self._augment_position = (epoch, batches_done)  # the resumed batches get the crops and flips they would have

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, drop_last=False)

    def eval_loader(self, split: str) -> DataLoader:
        """A deterministic loader over a whole split, for feature extraction."""
        dataset = {"train": self.train_set, "val": self.val_set}[split]
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
