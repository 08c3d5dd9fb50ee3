"""Each function of `dim_lightning.run.lightning_compat` (the only module that touches Lightning's private API)
against a real `Trainer`: a Lightning upgrade that moves one of those internals fails here, by name."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import ClusterEnvironment, LightningEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from dim_lightning.run import lightning_compat as compat
from dim_lightning.run.distributed import run_scoped_process_group


class _Logging(pl.LightningModule):
    """Logs its batch's number (1, 2, ...) as `x` (an epoch mean) and `top` (an epoch max)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        self.log("x", float(batch_idx + 1), on_step=False, on_epoch=True, batch_size=1)
        self.log("top", float(batch_idx + 1), on_step=False, on_epoch=True, reduce_fx="max", batch_size=1)
        return self.layer(batch[0]).sum()

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Probe(pl.Callback):
    """Calls `act(trainer, batch_idx)` after each training batch and keeps what it returns."""

    def __init__(self, act) -> None:
        self.act, self.seen = act, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append(self.act(trainer, batch_idx))


def _fit(*callbacks, **trainer_options) -> pl.Trainer:
    options = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False}
    options |= {"enable_progress_bar": False, "enable_model_summary": False, "callbacks": list(callbacks)}
    trainer = pl.Trainer(**(options | trainer_options))
    trainer.fit(_Logging())
    return trainer


def test_accumulation_windows_and_the_epochs_last_batch_are_read_from_the_loop() -> None:
    probe = _Probe(lambda trainer, _: (compat.accumulating(trainer), compat.epochs_last_batch(trainer)))
    _fit(probe, accumulate_grad_batches=2)
    assert probe.seen == [(True, False), (False, False), (True, False), (False, True)]


def test_a_stop_asked_for_after_a_batch_ends_the_fit_after_that_batch() -> None:
    def stop_after_second(trainer, batch_idx):
        if batch_idx == 1:
            compat.stop_at_next_check(trainer)
        return trainer.global_step

    probe = _Probe(stop_after_second)
    with pytest.raises(SIGTERMException):
        _fit(probe, max_epochs=3)
    assert probe.seen == [1, 2]


def test_a_stop_asked_for_at_an_epochs_end_ends_the_fit_with_that_epoch_complete() -> None:
    class StopAtEpochEnd(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            compat.stop_at_next_check(trainer)

    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.callbacks.append(StopAtEpochEnd())
    with pytest.raises(SIGTERMException):
        trainer.fit(_Logging())
    assert trainer.fit_loop.epoch_progress.current.completed == 1 and trainer.global_step == 4


def test_a_module_knows_whether_it_is_attached_to_a_trainer() -> None:
    module = _Logging()
    assert compat.attached_trainer(module) is None
    probe = _Probe(lambda trainer, _: compat.attached_trainer(trainer.lightning_module) is trainer)
    _fit(probe, limit_train_batches=1)
    assert probe.seen == [True]


def test_the_cluster_environment_is_lightnings() -> None:
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    assert isinstance(compat.cluster_environment(trainer), LightningEnvironment)


def test_epoch_sums_are_read_and_added_back_as_each_metric_reduces() -> None:
    def after_two_add_saved(trainer, batch_idx):
        sums = compat.epoch_sums(trainer)
        if batch_idx == 1:  # as a resumed run would: the cut epoch's first part, saved earlier
            saved = {
                "x": {"value": torch.tensor(10.0), "count": torch.tensor(2.0)},
                "top": {"value": torch.tensor(9.0)},
            }
            compat.add_epoch_sums(trainer, {f"training_step.{key}": state for key, state in saved.items()})
        return {key: {part: float(value) for part, value in state.items()} for key, state in sums.items()}

    probe = _Probe(after_two_add_saved)
    trainer = _fit(probe)
    assert probe.seen[1] == {"training_step.x": {"value": 3.0, "count": 2.0}, "training_step.top": {"value": 2.0}}
    assert float(trainer.callback_metrics["x"]) == pytest.approx((1 + 2 + 3 + 4 + 10) / 6)
    assert float(trainer.callback_metrics["top"]) == 9.0


def test_precisions_are_the_ones_the_trainer_takes() -> None:
    assert {"32-true", "bf16-mixed", "16-mixed", "64-true"} <= set(compat.PRECISIONS)
    pl.Trainer(accelerator="cpu", precision=compat.PRECISIONS[0], logger=False)  # accepted


class _CountingStrategy(compat.RelaunchingDDPStrategy):
    entered: list[str]

    @contextmanager
    def relaunch_context(self):
        self.entered.append("in")
        yield
        self.entered.append("out")


def test_the_ddp_launcher_starts_its_children_inside_the_strategys_context(monkeypatch) -> None:
    started = []
    strategy = _CountingStrategy()
    strategy.entered = []
    monkeypatch.setattr("subprocess.Popen", lambda command, **_: started.append(list(strategy.entered)))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False)
    assert isinstance(compat.cluster_environment(trainer), ClusterEnvironment)
    with run_scoped_process_group():  # the launcher sets LOCAL_RANK, MASTER_PORT, ... in this process
        trainer.strategy.launcher._call_children_scripts()  # what launch() does before the fit, without the fit
    assert started == [["in"]] and strategy.entered == ["in", "out"]  # rank 1 started inside the context


def test_the_ddp_strategy_switches_off_lightnings_per_step_stop_broadcast(monkeypatch) -> None:
    """One process through DDP (gloo): after setup the loop's broadcast is a no-op. (Two real processes:
    tests/test_benchmarks.py counts at most two collectives per step on the fast path under trainer=ddp_sim.)"""
    broadcasts = []
    monkeypatch.setattr(torch.distributed, "broadcast", lambda *args, **kwargs: broadcasts.append(args))

    def broadcast_now(trainer, _):
        trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor()
        return len(broadcasts)

    for strategy, expected in ((compat.RelaunchingDDPStrategy(), 0), (pl.strategies.DDPStrategy(), 1)):
        broadcasts.clear()
        probe = _Probe(broadcast_now)
        with run_scoped_process_group():  # DDP's launcher sets LOCAL_RANK, MASTER_PORT, ... in this process
            _fit(probe, strategy=strategy, limit_train_batches=1)
        assert probe.seen == [expected]  # Lightning's own would broadcast (the test can fail)
