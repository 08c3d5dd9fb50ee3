"""Exact mid-epoch resume of the training order.

The training order of epoch `e` is a pure function of (data.shuffle_seed, e) (`EpochPermutationSampler`).
A checkpoint stores, through the data module's `state_dict` (a Lightning hook), the epoch and the number of
its batches already trained, read from the trainer's own progress counters (the loader itself runs ahead by
the batches it prefetched, so its count would be off). On resume the training loader's next pass serves that
epoch from the next batch, so a resumed deterministic run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from dim_lightning.data.batches import IndexBatchSampler
from dim_lightning.data.on_device import DeviceBatches
from dim_lightning.run.state_checks import like_problems

Loader = TypeVar("Loader", DataLoader, DeviceBatches)

# Lightning warns that a mid-epoch checkpoint cannot be resumed exactly unless the loader itself is stateful;
# here the data module restores the order (below), so that warning would be wrong.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def training_position(trainer: pl.Trainer) -> tuple[int, int]:
    """(epoch, batches of it already trained); a finished epoch is the next epoch at batch 0."""
    epoch = trainer.current_epoch
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    if done >= trainer.num_training_batches:
        return epoch + 1, 0
    return epoch, done


class ResumableTrainOrder:
    """Mixin for a LightningDataModule whose training loader uses `IndexBatchSampler`."""

    _resume_point: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {"train_position": training_position(trainer)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("train_position")
        self._resume_point = tuple(position) if position is not None else None

    def batches_per_epoch(self, world_size: int) -> int:
        """Training batches of an epoch on each of `world_size` ranks."""
        raise NotImplementedError

    def state_problems(self, state: Any, trainer: pl.Trainer) -> list[str]:
        """What is wrong with a saved state (checked before a resume restores it): the position, an epoch and a
        batch within it."""
        if type(state) is not dict:
            return ["must be a mapping"]
        if not state:
            return []
        position = state.get("train_position")
        if type(position) not in (list, tuple) or len(position) != 2 or set(state) != {"train_position"}:
            return ["must hold train_position, (epoch, batches of it trained)"]
        problems = like_problems(list(position), [0, 0], "train_position")
        batches = self.batches_per_epoch(trainer.world_size)
        if not problems and position[1] >= batches:
            problems.append(f"train_position is at batch {position[1]} of an epoch of {batches} batches")
        return problems

    def resumed(self, loader: Loader) -> Loader:
        """The training loader (a DataLoader over an `IndexBatchSampler`, or on-device batches), set to continue
        at the restored position (once)."""
        target = loader.batch_sampler if isinstance(loader, DataLoader) else loader
        if self._resume_point is not None and isinstance(target, IndexBatchSampler | DeviceBatches):
            target.resume_at(*self._resume_point)
            self.on_resume(*self._resume_point)
            self._resume_point = None
        return loader

    def on_resume(self, epoch: int, batches_done: int) -> None:
        """Hook: restore whatever else depends on the training position."""
