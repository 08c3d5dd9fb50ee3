"""`data.on_device=true`: the whole uint8 train split resident on the accelerator, batches cut from it by
index there, with no DataLoader and no workers. The order is the batched path's (`EpochPermutationSampler`),
and scaling/augmentation run in the data module's `on_after_batch_transfer` as for any batch, so for a seed
both paths serve the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from dim_lightning.data.batches import EpochPermutationSampler
from dim_lightning.errors import DIMError, require

# Share of the free accelerator memory the resident split may take (the rest is for the model and activations).
MAX_FREE_FRACTION = 0.5


def to_resident(array: np.ndarray | Tensor, device: torch.device, name: str = "train split") -> Tensor:
    """`array` as a tensor on `device`; a clear error when it does not fit in the device's free memory."""
    tensor = array if isinstance(array, Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        need = tensor.numel() * tensor.element_size()
        require(
            need <= MAX_FREE_FRACTION * free,
            lambda: (
                f"data.on_device=true needs {need / 2**30:.2f} GiB on {device} for the uint8 {name}, but only "
                f"{free / 2**30:.2f} GiB is free (at most {MAX_FREE_FRACTION:.0%} of it is used for data); "
                "set data.on_device=false to stream batches from host memory, or use a smaller data.image_size"
            ),
        )
    try:
        return tensor.to(device)
    except torch.OutOfMemoryError as error:
        raise DIMError(
            f"data.on_device=true could not place the uint8 {name} on {device} ({error}); "
            "set data.on_device=false to stream batches from host memory"
        ) from error


class DeviceBatches:
    """Training batches (uint8 images, labels) indexed from tensors that already live on the device.

    `sampler` is the attribute Lightning calls `set_epoch` on; under several processes each rank takes
    every `world_size`-th index of the epoch's order (the same count on each rank)."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        sampler: EpochPermutationSampler,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.sampler = sampler
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the next pass serve epoch `epoch` from its batch `batches_done` on (exact mid-epoch resume)."""
        self.sampler.set_epoch(epoch)
        self._resume = (epoch, batches_done)

    def __len__(self) -> int:
        return len(self.sampler) // self.world_size // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.sampler.order()[self.rank :: self.world_size].to(self.images.device)
        resume, self._resume = self._resume, None
        skip = resume[1] if resume and resume[0] == self.sampler.epoch else 0
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]
