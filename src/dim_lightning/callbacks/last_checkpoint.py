"""The routine writers of `checkpoints/last.ckpt`: every N optimizer steps (`StepCheckpoint`, so a run killed
without warning loses at most N steps), and at every epoch's end and once more when training ends, marked
finished (`EpochCheckpoint`). The same command in a run dir reads that file (`dim_lightning.resume_policy`):
it resumes an unfinished run and does not retrain a finished one, only redoing its final evaluation if
metrics.json is missing. The third writer, on a stop signal, is `PreemptionCheckpoint`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint

from dim_lightning.run.checkpoints import FINISHED_KEY
from dim_lightning.run.lightning_compat import epochs_last_batch


def max_steps_reached(trainer: pl.Trainer) -> bool:
    """Whether `trainer.max_steps` optimizer steps are done (training ends after this step)."""
    return trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps


def is_last_epoch(trainer: pl.Trainer) -> bool:
    """Whether the epoch ending now is the run's last (training ends after it anyway: max_epochs or max_steps)."""
    last = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    return last or max_steps_reached(trainer)


class EpochCheckpoint(Checkpoint):
    """Save `<dirpath>/<filename>.ckpt` at each epoch's end (but the last) and at the end of training, marked
    finished (with the final training numbers, kept by `ResumableEpochMeans`).

    `ModelCheckpoint` with `save_top_k=0` saves only every N steps, and a finished run must be told apart
    from a stopped one; a `Checkpoint` callback, so Lightning runs it after the callbacks whose state it saves."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._finished = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finished = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not is_last_epoch(trainer) and not trainer.fast_dev_run:  # the last: on_train_end saves it, finished
            trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        self._finished = True
        trainer.save_checkpoint(self.path)

    # checkpoint state: plain types only (checkpoints load with torch.load(weights_only=True))
    def state_dict(self) -> dict[str, Any]:
        return {FINISHED_KEY: True} if self._finished else {}


class StepCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` for periodic step checkpoints (`every_n_train_steps`) that skips an epoch's last batch:
    a checkpoint there would be resumed before that epoch's validation and end, which the resumed process would
    run without the epoch's logged sums; the epoch-end checkpoint (`EpochCheckpoint`) follows it anyway. Nor does
    it save when training ends (`ModelCheckpoint` would, unless it saved at the last step): that checkpoint is
    `EpochCheckpoint`'s, marked finished, and written once."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not epochs_last_batch(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: the end of training is `EpochCheckpoint`'s save."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing is restored: `ModelCheckpoint`'s state is paths (the last and best files, the folder), which
        a resumed run would delete when it next saves, and a file from someone else could name any folder. This
        one only ever writes `<run dir>/checkpoints/last.ckpt`, which the code fixes."""
