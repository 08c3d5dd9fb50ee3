"""Stop signals (SIGTERM, SLURM's SIGUSR1, submitit's SIGUSR2, Ctrl-C): stop where a checkpoint can hold the whole
state (an accumulation window's end, the same step on every rank), save `checkpoints/last.ckpt`, hand over to the
launcher's requeue and exit with 128 + the signal, so that the same command resumes exactly. Lightning's own
SIGTERM and SLURM handlers, which stop mid-window or save inside the handler, are replaced for the fit. Where
each stop happens and why: docs/resume-and-clusters.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dim_lightning.callbacks.last_checkpoint import is_last_epoch, max_steps_reached
from dim_lightning.errors import DIMError
from dim_lightning.run.checkpoints import last_checkpoint
from dim_lightning.run.distributed import lost_peer
from dim_lightning.run.lightning_compat import accumulating, cluster_environment, epochs_last_batch, stop_at_next_check
from dim_lightning.run.resume_command import after_stop

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


class Preempted(SystemExit):
    """The run stopped on a signal after saving its checkpoint; the exit code is 128 + the signal number."""


class PreemptionCheckpoint(Checkpoint):
    """Save `<dirpath>/<filename>.ckpt` when a signal stops training, then hand over to the launcher.

    A `Checkpoint` callback, so Lightning runs its hooks after every other callback's: a signal that arrived
    during this batch's other callbacks (e.g. `debug=preempt`) still stops after this batch."""

    def __init__(self, dirpath: str, filename: str = "last", check_every_n_steps: int = 10) -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.check_every_n_steps = check_every_n_steps
        self.received: int | None = None
        self._stop_at_epoch_end = False
        self._launcher: dict[int, Any] = {}  # the handlers ours replace during a fit (e.g. submitit's requeue)
        self._trainer: pl.Trainer | None = None
        self._training = self._trained = False

    # -- signals ----------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.received, self._stop_at_epoch_end = None, False
        self._trainer, self._training, self._trained = trainer, False, False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Hold the signals for the whole fit. Installed before Lightning registers its handlers, ours are what
        Lightning puts back when training ends, so they also cover the final evaluation (`on_fit_end`), also in
        a fit that only redoes it; `release_signals` gives the launcher's back."""
        if self._launcher or threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._launcher[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take the signals over before the sanity check: under Lightning's handler a signal then would stop one
        rank alone after its first step (the others would wait for it in the next collective)."""
        self._take_over_signals()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._training = True
        self._take_over_signals()  # without a sanity check (num_sanity_val_steps=0)

    def _take_over_signals(self) -> None:
        """Put ours back over Lightning's SIGTERM handler (registered as the fit starts, around ours) for the rest
        of the fit; none when `on_fit_start` installed none (not the main thread, which alone may set handlers)."""
        for signum in self._launcher:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._after_training():
            self._stop_now(signum)
        if signum == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if self.received is None:
            self.received = signum
            rank_zero_info(
                f"Received {signal.Signals(signum).name}: saving a checkpoint at the end of this step, then stopping"
                + (" (press Ctrl-C again to abort at once)" if signum == signal.SIGINT else "")
            )

    def _check_due(self, trainer: pl.Trainer) -> bool:
        """One process reads its own flag after every step; ranks compare theirs every N steps only."""
        return trainer.world_size == 1 or trainer.global_step % self.check_every_n_steps == 0

    def _agreed(self, trainer: pl.Trainer) -> bool:
        """Whether any rank received a stop signal (one all-reduce under DDP, on every rank at the same point)."""
        if trainer.world_size == 1:
            return self.received is not None
        return bool(trainer.strategy.reduce_boolean_decision(self.received is not None, all=False))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if accumulating(trainer) or self._stop_at_epoch_end or not self._check_due(trainer):
            return
        if max_steps_reached(trainer):
            return  # training ends after this step anyway (on_train_end hands a signal over)
        if not self._agreed(trainer):
            return
        if epochs_last_batch(trainer):
            self._stop_at_epoch_end = True  # the epoch's validation runs first; stop when the epoch is complete
            return
        stop_at_next_check(trainer)  # Lightning raises SIGTERMException after this batch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop here if a signal came during the epoch's last batch or its validation (not after the last
        epoch: training ends there anyway, its checkpoint marked finished, and `on_train_end` hands over)."""
        if not is_last_epoch(trainer) and (self._stop_at_epoch_end or self._agreed(trainer)):
            stop_at_next_check(trainer)  # raised once the epoch is counted complete

    def release_signals(self) -> None:
        """The fit is over: give the launcher's handlers back (also after an exception, which skips `teardown`)."""
        launcher, self._launcher = self._launcher, {}
        for signum, handler in launcher.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._trainer = None

    def _after_training(self) -> bool:
        """Whether training is over (ended, or a fit that only redoes the final evaluation) and the fit goes on."""
        trainer = self._trainer
        if trainer is None or self._trained:
            return trainer is not None
        epochs_done = trainer.fit_loop.epoch_progress.current.processed
        all_epochs = trainer.max_epochs not in (None, -1) and epochs_done >= trainer.max_epochs
        return not self._training and (all_epochs or max_steps_reached(trainer))

    def _stop_now(self, signum: int) -> None:
        """A signal after training (saved, marked finished): stop the final evaluation now, hand over, exit."""
        trainer = self._trainer
        rank_zero_info(
            f"Stopped by {signal.Signals(signum).name} after training ended (step {trainer.global_step}, saved "
            f"marked finished in {self.path}), before the final evaluation finished. "
            + after_stop(self.path.parent.parent, "redoes only the final evaluation")
        )
        _hand_over_to_launcher(trainer, signum, self._launcher)
        raise Preempted(128 + signum)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A signal in the last epoch did not stop training, which has now ended and been saved marked finished
        (`EpochCheckpoint` comes first in conf/callbacks/default.yaml): stop before the final evaluation and hand
        over to the launcher; the requeued command redoes only the evaluation. Otherwise a signal from now on
        stops at once (`_stop_now`)."""
        stop = self._stop_at_epoch_end or self._agreed(trainer)
        if stop:
            signum = self.received or signal.SIGTERM
            rank_zero_info(
                f"Stopped by {signal.Signals(signum).name} as training ended (step {trainer.global_step}), before "
                "the final evaluation. " + after_stop(self.path.parent.parent, "redoes only the final evaluation")
            )
            _hand_over_to_launcher(trainer, signum, self._launcher)
            raise Preempted(128 + signum)
        self._trained = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.release_signals()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return  # a crash, divergence, a second Ctrl-C or a stop after training: the last checkpoint is kept
        trainer.save_checkpoint(self.path)
        signum = self.received or signal.SIGTERM
        rank_zero_info(
            f"Stopped by {signal.Signals(signum).name} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); saved {self.path}. " + after_stop(self.path.parent.parent, "resumes from it")
        )
        _hand_over_to_launcher(trainer, signum, self._launcher)


def _submitit_requeue(handlers: dict[int, Any]) -> Callable | None:
    """submitit's requeue handler, if this process runs as a submitit job (it installs one for its signal)."""
    for handler in handlers.values():
        if getattr(handler, "__qualname__", "").endswith("checkpoint_and_try_requeue"):
            return handler
    return None


def _hand_over_to_launcher(trainer: pl.Trainer, signum: int, handlers: dict[int, Any]) -> None:
    """After the checkpoint is saved, requeue: in a submitit job its own handler does (whatever signal stopped
    us; it requeues from rank 0 and exits); under plain SLURM with requeue allowed, rank 0 runs
    `scontrol requeue` (what Lightning's SLURM handler does, but after a checkpoint at a step boundary)."""
    requeue = _submitit_requeue(handlers)
    if requeue is not None:
        requeue(signal.SIGUSR2, None)
        return
    environment = cluster_environment(trainer)
    if not (isinstance(environment, SLURMEnvironment) and environment.auto_requeue and trainer.is_global_zero):
        return
    if signum not in (signal.SIGUSR1, signal.SIGTERM):
        return
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{array_task}" if array_job and array_task else os.environ.get("SLURM_JOB_ID", "")
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    rank_zero_info(
        f"Requeued SLURM job {job}" if result.returncode == 0 else f"scontrol requeue {job} failed: {result.stderr}"
    )


def _received(stoppers: list[PreemptionCheckpoint]) -> int | None:
    """The stop signal this process received, if any."""
    return next((int(c.received) for c in stoppers if c.received), None)


@contextmanager
def exit_on_preemption(trainer: pl.Trainer) -> Iterator[None]:
    """Around `trainer.fit`: turn Lightning's `SIGTERMException` (raised after the checkpoint was saved) into
    `Preempted`, whose exit code is 128 + the signal number, as a shell reports a process stopped by that signal;
    turn a DDP peer's death (a gloo/NCCL error) into a one-paragraph `DIMError` (or `Preempted` if this rank got a
    stop signal too); and give the launcher's signal handlers back when the fit is over."""
    stoppers = [c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)]
    try:
        yield
    except SIGTERMException as error:
        raise Preempted(128 + (_received(stoppers) or signal.SIGTERM)) from error
    except Exception as error:
        if trainer.world_size == 1 or not lost_peer(error):
            raise
        if signum := _received(stoppers):
            rank_zero_info(f"Stopped by {signal.Signals(signum).name}; another rank had stopped already")
            raise Preempted(128 + signum) from error
        raise DIMError(
            f"rank {trainer.global_rank} of {trainer.world_size} lost contact with another rank at step "
            f"{trainer.global_step}: that process died (out of memory, killed, or its own error, shown in its output "
            f"above or in its log). Nothing saved was lost: the last checkpoint, "
            f"{last_checkpoint(trainer.default_root_dir)}, is kept. Fix the cause, then run the same command "
            f"again to resume from it ({str(error).strip().splitlines()[0][:200]})"
        ) from error
    finally:
        for stopper in stoppers:
            stopper.release_signals()
