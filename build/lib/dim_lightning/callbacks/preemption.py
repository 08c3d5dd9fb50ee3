"""Preemption: on SIGTERM, SIGUSR1 (what SLURM sends before it kills a job) or Ctrl-C, finish the current
batch, save `checkpoints/last.ckpt` at that step and exit cleanly (no traceback; exit code 128 + signal).

Built on Lightning's own SIGTERM handling: Lightning sets `trainer.received_sigterm` from its handler and,
at the end of the running batch, raises `SIGTERMException`, calling every callback's `on_exception`. This
callback routes SIGUSR1 and a first Ctrl-C through the same notifier (a second Ctrl-C aborts at once, as
usual), and saves the checkpoint in `on_exception`. Under SLURM with auto-requeue, Lightning's own SIGUSR1
handler (save + requeue) is left in charge. The global RNG states are saved in the checkpoint and restored
when training resumes, so a resumed deterministic run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dim_lightning.callbacks.nonfinite import batch_number


class Preempted(SystemExit):
    """The run stopped on a signal after saving its checkpoint; the exit code is 128 + the signal number."""


class PreemptionCheckpoint(pl.Callback):
    """Save `<dirpath>/<filename>.ckpt` when a signal stops training, and carry the RNG states in checkpoints."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    # -- signals ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. not in a threaded sweeper)
        environment = trainer._accelerator_connector.cluster_environment
        slurm_requeue = isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        ours = [signal.SIGINT] + ([] if slurm_requeue else [signal.SIGUSR1])
        for signum in ours:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler(trainer))
        # Lightning already registered its SIGTERM notifier; remember which signal arrived, then call it.
        lightning_sigterm = signal.getsignal(signal.SIGTERM)
        self._previous[signal.SIGTERM] = lightning_sigterm

        def on_sigterm(signum, frame):
            self.received = self.received or signum
            if callable(lightning_sigterm):
                lightning_sigterm(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _handler(self, trainer: pl.Trainer):
        def handle(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.received is not None:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
            self.received = signum
            rank_zero_info(
                f"Received {signal.Signals(signum).name}: saving a checkpoint after this batch, then stopping"
                + (" (press Ctrl-C again to abort at once)" if signum == signal.SIGINT else "")
            )
            trainer._signal_connector._sigterm_notifier_fn(signum, frame)

        return handle

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()
        # ModelCheckpoint saves either every N steps or at epoch ends, not both: with every_n_train_steps the
        # final step may not be saved; save it, so that last.ckpt is always the end of training.
        saved = [getattr(c, "_last_global_step_saved", -1) for c in trainer.checkpoint_callbacks]
        if saved and max(saved) != trainer.global_step and not trainer.fast_dev_run:
            trainer.save_checkpoint(self.path)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if not isinstance(exception, SIGTERMException):
            return  # a crash, divergence or a second Ctrl-C: keep the last good checkpoint as it is
        trainer.save_checkpoint(self.path)
        signum = self.received or signal.SIGTERM
        rank_zero_info(
            f"Stopped by {signal.Signals(signum).name} at step {batch_number(trainer)} (epoch "
            f"{trainer.current_epoch}); saved {self.path}. Resume with ckpt_path=last and "
            f"hydra.run.dir={self.path.parent.parent} (or ckpt_path={self.path})"
        )

    # -- RNG states -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # plain types and tensors only, so that checkpoints still load with torch.load(weights_only=True)
        kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)
        states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict.get("rng")


@contextmanager
def exit_on_preemption(trainer: pl.Trainer) -> Iterator[None]:
    """Turn Lightning's `SIGTERMException` (raised after the checkpoint was saved) into `Preempted`, whose
    exit code is 128 + the signal number, as a shell reports a process stopped by that signal."""
    try:
        yield
    except SIGTERMException as error:
        received = [c.received for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint) and c.received]
        raise Preempted(128 + int(received[0] if received else signal.SIGTERM)) from error


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
