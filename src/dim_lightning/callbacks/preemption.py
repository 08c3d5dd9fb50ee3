"""Preemption: on SIGTERM, SIGUSR1 (SLURM's `--signal`), SIGUSR2 (submitit's preemption/timeout signal) or
Ctrl-C, finish the current optimizer step, save `checkpoints/last.ckpt` there and exit cleanly (no traceback;
exit code 128 + signal), then let the launcher requeue the job: submitit's own handler runs after the save, and
under plain SLURM with requeue the job is requeued with `scontrol requeue`. The requeued job runs the same
command in the same run dir, which resumes from that checkpoint (dim_lightning.resume_policy).

Where the stop happens, on every rank alike:
- only at the end of an accumulation window (`trainer.accumulate_grad_batches`), never between its batches,
  whose summed gradients a checkpoint cannot hold;
- a signal received in an epoch's last batch or its validation stops after that epoch ends (never inside the
  validation loop); one received in the last epoch (or once max_steps is reached) lets training end, saved
  marked finished, then stops before the final evaluation (the requeued command redoes only that);
- under DDP the ranks agree with one all-reduce every `check_every_n_steps` optimizer steps (at a window end) and
  at each epoch end (a signal may reach one rank only, e.g. a `kill` of the main process), so every rank stops
  after the same step and joins the same checkpoint save; a signal is acted on within that many steps. (Lightning's
  own per-step broadcast of its SIGTERM flag, a collective and a host read every step, is switched off by
  `HydraDDPStrategy`: this agreement replaces it.)
Lightning's own SIGTERM and SLURM SIGUSR1 handlers (which stop mid-window or save inside the handler) are
replaced from the sanity check until training ends. The other writers of `last.ckpt`: `EpochCheckpoint` (each
epoch's end; the end of training, marked finished) and `StepCheckpoint` (every N steps). Every checkpoint's RNG
states are `DIMModule`'s.
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
        self._previous: dict[int, Any] = {}

    # -- signals ----------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.received, self._stop_at_epoch_end = None, False

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take the signals over before the sanity check: under Lightning's handler a signal then would stop one
        rank alone after its first step (the others would wait for it in the next collective)."""
        self._take_over_signals()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_over_signals()  # without a sanity check (num_sanity_val_steps=0)

    def _take_over_signals(self) -> None:
        """Replace the current handlers (Lightning's, installed as the fit starts) until training ends."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return  # already ours; or not the main thread, which alone may set handlers (a threaded sweeper)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
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
        loop = trainer.fit_loop.epoch_loop
        if loop._should_accumulate() or self._stop_at_epoch_end or not self._check_due(trainer):
            return
        if max_steps_reached(trainer):
            return  # training ends after this step anyway (on_train_end hands a signal over)
        if not self._agreed(trainer):
            return
        if loop._num_ready_batches_reached():
            self._stop_at_epoch_end = True  # the epoch's validation runs first; stop when the epoch is complete
            return
        trainer._signal_connector.received_sigterm = True  # Lightning raises SIGTERMException after this batch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop here if a signal came during the epoch's last batch or its validation (not after the last
        epoch: training ends there anyway, its checkpoint marked finished, and `on_train_end` hands over)."""
        if not is_last_epoch(trainer) and (self._stop_at_epoch_end or self._agreed(trainer)):
            trainer._signal_connector.received_sigterm = True  # raised once the epoch is counted complete

    def _restore_handlers(self) -> dict[int, Any]:
        """Put the handlers back that were replaced; return them (the launcher's requeue handler is among them)."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        return previous

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A signal in the last epoch did not stop training, which has now ended and been saved marked finished
        (`EpochCheckpoint` comes first in conf/callbacks/default.yaml): stop before the final evaluation and hand
        over to the launcher; the requeued command redoes only the evaluation."""
        stop = self._stop_at_epoch_end or self._agreed(trainer)
        handlers = self._restore_handlers()
        if stop:
            signum = self.received or signal.SIGTERM
            rank_zero_info(
                f"Stopped by {signal.Signals(signum).name} as training ended (step {trainer.global_step}), before "
                "the final evaluation; the same command redoes only the evaluation"
            )
            _hand_over_to_launcher(trainer, signum, handlers)
            raise Preempted(128 + signum)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._previous = {}  # a fit that skipped training (on_train_end not called): Lightning restored them

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        handlers = self._restore_handlers()
        if not isinstance(exception, SIGTERMException):
            return  # a crash, divergence or a second Ctrl-C: keep the last good checkpoint as it is
        trainer.save_checkpoint(self.path)
        signum = self.received or signal.SIGTERM
        rank_zero_info(
            f"Stopped by {signal.Signals(signum).name} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); saved {self.path}. The same command resumes from it (or ckpt_path=last "
            f"with hydra.run.dir={self.path.parent.parent})"
        )
        _hand_over_to_launcher(trainer, signum, handlers)


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
    environment = trainer._accelerator_connector.cluster_environment
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


@contextmanager
def exit_on_preemption(trainer: pl.Trainer) -> Iterator[None]:
    """Turn Lightning's `SIGTERMException` (raised after the checkpoint was saved) into `Preempted`, whose
    exit code is 128 + the signal number, as a shell reports a process stopped by that signal."""
    try:
        yield
    except SIGTERMException as error:
        received = [c.received for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint) and c.received]
        raise Preempted(128 + int(received[0] if received else signal.SIGTERM)) from error
