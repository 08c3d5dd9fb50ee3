"""Faults: a non-finite loss stops the run (or is skipped), signals save a checkpoint and exit cleanly, a
resumed run continues mid-epoch exactly, and the run's log lines land in train.log."""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from dim_lightning.callbacks import Preempted, TrainingDiverged
from dim_lightning.data.batches import EpochPermutationSampler, IndexBatchSampler
from dim_lightning.run.log_routing import LIGHTNING_LOGGERS, route_lightning_logs
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC, run_cli

SHORT = [
    *FAST,
    SMALL_CRITIC["dot"],
    "trainer.limit_val_batches=1",
    "eval.final=false",
    "model.z_dim=32",
    "data.image_size=16",
]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_inject_nan_stops_with_the_step_and_terms_and_keeps_the_last_good_checkpoint(make_config, tmp_path) -> None:
    cfg = make_config(
        *SHORT,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "debug=inject_nan",
        "callbacks.inject_nan.step=3",
        "callbacks.inject_nan.term=local",
        "model.alpha=0.5",
    )
    with pytest.raises(TrainingDiverged) as raised:
        train(cfg)
    message = str(raised.value)
    assert "non-finite at step 3 (epoch 0)" in message and "loss_local" in message
    assert "loss_global" not in message  # only the poisoned term is named
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2  # the last good one, written before the bad step
    assert all(torch.isfinite(w).all() for w in saved["state_dict"].values() if w.is_floating_point())


def test_skip_nonfinite_skips_the_batch_counts_it_and_keeps_weights_finite(make_config, tmp_path) -> None:
    cfg = make_config(
        *SHORT,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "model.skip_nonfinite=true",
        "debug=inject_nan",
        "callbacks.inject_nan.step=2",  # whole batch NaN: BatchNorm buffers too, restored on skip
    )
    trainer = train(cfg).trainer
    assert trainer.global_step == 6
    assert float(trainer.callback_metrics["train/skipped_nonfinite"]) == 1.0
    for name, tensor in trainer.lightning_module.state_dict().items():
        assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), name
    # the last epoch's mean loss is finite (the skipped batch's logged values stay in its own epoch's means)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_resume_position_skips_the_trained_batches_of_that_epoch() -> None:
    batches = IndexBatchSampler(EpochPermutationSampler(20, seed=3), batch_size=4, drop_last=True)
    batches.sampler.set_epoch(1)
    full = list(batches)
    batches.resume_at(1, 2)
    assert list(batches) == full[2:]
    assert list(batches) == full  # once: the next pass over the epoch is whole again


def test_preempted_run_resumes_mid_epoch_to_the_same_weights(make_config, tmp_path) -> None:
    common = [*SHORT, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.deterministic=true"]
    straight = train(make_config(*common, output_dir=tmp_path / "straight")).trainer
    with pytest.raises(Preempted) as raised:
        train(make_config(*common, "debug=preempt", "callbacks.preempt.step=1", output_dir=tmp_path / "cut"))
    assert raised.value.code == 143  # 128 + SIGTERM
    cut = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert torch.load(cut, map_location="cpu", weights_only=False)["global_step"] == 2  # mid-epoch 0
    resumed = train(make_config(*common, "ckpt_path=last", output_dir=tmp_path / "cut")).trainer
    assert resumed.global_step == straight.global_step == 6
    expected = straight.lightning_module.state_dict()
    for name, tensor in resumed.lightning_module.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


class CtrlCInSanityCheck(pl.Callback):
    """Ctrl-C during the sanity check's validation batch (before training starts)."""

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_signal_during_the_sanity_check_stops_after_the_first_step(make_config, tmp_path) -> None:
    # the preemption callback holds the signals from the sanity check on (under DDP every rank then agrees on the
    # stop); under Lightning's handler this Ctrl-C was a KeyboardInterrupt that saved nothing
    with pytest.raises(Preempted) as raised:
        train(make_config(*SHORT, "+callbacks.ctrl_c._target_=tests.test_reliability.CtrlCInSanityCheck"))
    assert raised.value.code == 130  # 128 + SIGINT
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 1


@pytest.mark.parametrize(
    "ends",
    [["trainer.max_epochs=1"], ["trainer.max_epochs=-1", "+trainer.max_steps=3"]],
    ids=["last epoch", "max_steps"],
)
def test_a_signal_as_training_ends_stops_before_the_evaluation_with_training_marked_finished(
    make_config, tmp_path, ends
) -> None:
    common = [*SHORT, *ends, "trainer.limit_train_batches=3", "debug=preempt", "callbacks.preempt.step=2"]
    with pytest.raises(Preempted) as raised:  # the signal comes in the last step
        train(make_config(*common))
    assert raised.value.code == 143 and not (tmp_path / "metrics.json").exists()
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3 and saved["callbacks"]["EpochCheckpoint"]["finished"] is True
    redone = train(make_config(*common))  # the requeued command (no step left to signal in): the evaluation only
    assert redone.trainer.global_step == 3 and (tmp_path / "metrics.json").is_file()
    assert train(make_config(*common)).trainer is None


def test_lightning_log_lines_reach_the_root_handlers(tmp_path) -> None:
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log")
    saved = {
        name: (logging.getLogger(name).propagate, list(logging.getLogger(name).handlers)) for name in LIGHTNING_LOGGERS
    }
    root.addHandler(handler)
    try:
        route_lightning_logs()
        logging.getLogger("pytorch_lightning.callbacks").info("restored from step 7")
        logging.getLogger("dim_lightning.train").warning("our own line")
    finally:
        root.removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)
        for name, (propagate, handlers) in saved.items():
            logging.getLogger(name).propagate = propagate
            logging.getLogger(name).handlers = handlers
    text = (tmp_path / "train.log").read_text()
    assert "restored from step 7" in text and "our own line" in text


# ---- through the command line (slow lane) --------------------------------------------------------------
CLI = [
    "logger=csv",
    "data.batch_size=32",
    "data.image_size=16",
    "critic.network.units=64",
    "model.z_dim=32",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=2",
    "trainer.deterministic=true",
    "eval.final=false",  # metrics.json: the training numbers (losses, MI, online probe accuracy)
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code"), [("SIGUSR1", 138), ("SIGINT", 130)])
def test_sigusr1_and_ctrl_c_save_and_exit_cleanly(tmp_path, name: str, code: int) -> None:
    result = run_cli(
        *CLI, f"hydra.run.dir={tmp_path}", "debug=preempt", f"callbacks.preempt.signal={name}", cwd=tmp_path
    )
    assert result.returncode == code and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 6  # batch 5 finished, then stopped


@pytest.mark.slow
def test_cli_inject_nan_names_the_step_and_leaves_a_loadable_checkpoint(tmp_path) -> None:
    result = run_cli(
        *CLI,
        f"hydra.run.dir={tmp_path}",
        "debug=inject_nan",
        "callbacks.model_checkpoint.every_n_train_steps=4",
        cwd=tmp_path,
    )
    output = result.stderr + result.stdout
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    assert "the training loss became non-finite at step 10 (epoch 1)" in output and "loss_local" in output
    weights = _weights(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path) -> None:
    from dim_lightning.run.checkpoints import AtomicCheckpointIO
    from dim_lightning.utils.atomic import atomic_write, atomic_write_text

    path = tmp_path / "metrics.json"
    atomic_write_text(path, '{"old": 1}')

    def crash(file) -> None:
        file.write(b'{"new":')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_text() == '{"old": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, tmp_path / "c" / "last.ckpt")
    assert torch.equal(torch.load(tmp_path / "c" / "last.ckpt")["w"], torch.ones(3))


def test_step_checkpoints_and_the_final_step_is_saved_too(make_config, tmp_path) -> None:
    cfg = make_config(
        *SHORT,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "callbacks.model_checkpoint.every_n_train_steps=4",
    )
    trainer = train(cfg).trainer
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert trainer.global_step == saved["global_step"] == 6  # step 4 by ModelCheckpoint, step 6 at the end
    assert saved["callbacks"]["EpochCheckpoint"]["finished"] is True


def test_the_end_of_training_is_saved_by_the_epoch_checkpoint_alone(make_config, tmp_path) -> None:
    # the step callback saves every N steps only: Lightning's own end-of-training save (unmarked, when no step
    # save came) would be a second write of the end, and without the epoch checkpoint a silent one
    train(
        make_config(*SHORT, "trainer.max_epochs=1", "trainer.limit_train_batches=6", "callbacks.epoch_checkpoint=null")
    )
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
