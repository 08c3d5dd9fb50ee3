"""Whole batches by index: a seeded per-epoch permutation, cut into index batches, each fetched from the uint8
array with one index operation (`ImageArrayDataset.__getitems__`), never one `__getitem__` per image.

The order of epoch `e` is a pure function of `(seed, e)`: Lightning calls `set_epoch(e)` on
`dataloader.batch_sampler.sampler` at the start of every epoch, and the on-device path
(`data.on_device`) draws the same permutation, so both paths serve the same batches.

Several processes (DDP) shard here too, with one mechanism for every device count (the trainer runs with
`use_distributed_sampler=False`, so Lightning does not wrap a `DistributedSampler` around us): rank `r` of
`W` takes every `W`-th index of the epoch's order from `r` on (`rank_shard`). Training drops the tail that
does not fill a batch on every rank; validation gives every rank the same number of images (so every rank
runs the same batch shapes, which the gathered negatives need) and counts each image at most once: the at most
`W - 1` images left over are not scored (no padding duplicates).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Sampler


def mixed_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of `keys` (e.g. run seed, epoch, batch), well mixed."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochPermutationSampler(Sampler[int]):
    """All indices `0..n-1`, in a random order fixed by `(seed, epoch)` (or in order when `shuffle=False`)."""

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True) -> None:
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> Tensor:
        """The epoch's index order as an int64 tensor (`epoch` defaults to the one last set)."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), int(epoch)]))
        return torch.from_numpy(rng.permutation(self.num_items))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.num_items


def rank_shard(order: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank `rank`'s share of an epoch order: every `world_size`-th index from `rank` on, the same count on
    every rank (the at most `world_size - 1` indices left over are dropped)."""
    if world_size == 1:
        return order
    return order[rank : len(order) - len(order) % world_size : world_size]


class IndexBatchSampler(BatchSampler):
    """`BatchSampler` that cuts its sampler's whole epoch order (this rank's shard of it) into index lists in
    one pass."""

    _resume: tuple[int, int] | None = None

    def __init__(
        self, sampler: Sampler[int], batch_size: int, drop_last: bool, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        count = len(self.sampler) // self.world_size
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the next pass serve epoch `epoch` from its batch `batches_done` on (exact mid-epoch resume)."""
        if isinstance(self.sampler, EpochPermutationSampler):
            self.sampler.set_epoch(epoch)
        self._resume = (epoch, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        sampler = self.sampler
        order = sampler.order() if isinstance(sampler, EpochPermutationSampler) else torch.tensor(list(sampler))
        order = rank_shard(order, self.rank, self.world_size).tolist()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        resume, self._resume = self._resume, None
        skip = resume[1] if resume and resume[0] == getattr(sampler, "epoch", None) else 0
        for start in range(skip * self.batch_size, stop, self.batch_size):
            yield order[start : start + self.batch_size]


def take(array: np.ndarray | Tensor, index: Sequence[int] | Tensor) -> Tensor:
    """`array[index]` as a tensor with one fancy-index operation (numpy arrays and memory maps are copied out)."""
    if isinstance(array, Tensor):
        return array[torch.as_tensor(index, dtype=torch.long, device=array.device)]
    return torch.from_numpy(np.ascontiguousarray(array[np.asarray(index, dtype=np.int64)]))


def collate_batch(batch: Any) -> Any:
    """The batch as `__getitems__` built it: already stacked tensors, nothing to collate."""
    return batch
