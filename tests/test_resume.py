"""Exact resume: the same command in a run dir continues a stopped run to the uninterrupted run's weights and
metrics (also inside the last epoch, with the concat critic's RNG draws, inside an accumulation window, from a
periodic step checkpoint), does not retrain a finished run, and refuses a run dir of another config."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from dim_lightning.callbacks import Preempted
from dim_lightning.data.batches import EpochPermutationSampler, IndexBatchSampler, rank_shard
from dim_lightning.errors import DIMError
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC
from tests.test_reliability import CLI as RELIABILITY_CLI

BASE = [
    *FAST,
    "trainer.limit_val_batches=2",
    "eval.final=false",  # metrics.json: the training numbers (epoch means, online probe)
    "model.z_dim=32",
    "data.image_size=16",
    "trainer.deterministic=true",
]


def _one_epoch(critic: str = "dot") -> list[str]:
    return [*BASE, f"critic={critic}", SMALL_CRITIC[critic], "trainer.max_epochs=1", "trainer.limit_train_batches=4"]


def _varies(key: str) -> bool:
    """Timings and the run id differ between two runs of one config; every other number must not."""
    return key.startswith("time/") or key in ("train/img_per_s", "run_id")


def _equal_runs(straight, resumed) -> None:
    expected = straight.trainer.lightning_module.state_dict()
    for name, tensor in resumed.trainer.lightning_module.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for key, value in straight.metrics.items():
        if not _varies(key):
            assert resumed.metrics[key] == value, key


@pytest.mark.parametrize("critic", ["dot", "concat"])  # concat draws its negatives from the global RNG
def test_same_command_resumes_inside_the_last_epoch_exactly(make_config, tmp_path, caplog, critic) -> None:
    common = _one_epoch(critic)
    straight = train(make_config(*common, output_dir=tmp_path / "straight"))
    cut = [*common, "debug=preempt", "callbacks.preempt.step=1"]  # SIGTERM after batch 1 of 4
    with pytest.raises(Preempted):
        train(make_config(*cut, output_dir=tmp_path / "cut"))
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and saved["epoch"] == 0
    with caplog.at_level(logging.INFO):
        resumed = train(make_config(*cut, output_dir=tmp_path / "cut"))  # the same command, nothing added
    assert "resuming from step 2 of epoch 0 (batch 2 of it)" in caplog.text
    assert {"train/loss", "train/mi_local", "probe/online_train_acc"} <= set(resumed.metrics)
    _equal_runs(straight, resumed)


def test_a_stop_inside_an_accumulation_window_waits_for_its_end(make_config, tmp_path) -> None:
    common = [*_one_epoch(), "trainer.limit_train_batches=6", "++trainer.accumulate_grad_batches=2"]
    straight = train(make_config(*common, output_dir=tmp_path / "straight"))
    cut = [*common, "debug=preempt", "callbacks.preempt.step=2"]  # signal after batch 2: inside window 2
    with pytest.raises(Preempted):
        train(make_config(*cut, output_dir=tmp_path / "cut"))
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2  # after batch 3, the window's end: 2 optimizer steps, nothing half-summed
    _equal_runs(straight, train(make_config(*cut, output_dir=tmp_path / "cut")))


class _Crash(Exception):
    pass


def _crash_in_epoch_0_validation(cfg, monkeypatch) -> dict:
    """Train `cfg` until epoch 0's validation, then die there without warning (no save, as a SIGKILL); return
    the run's checkpoints/last.ckpt as it was left."""
    from dim_lightning.callbacks import epoch_means

    def crash(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == 0:
            raise _Crash

    monkeypatch.setattr(epoch_means.ResumableEpochMeans, "on_validation_start", crash, False)
    with pytest.raises(_Crash):
        train(cfg)
    monkeypatch.undo()
    return torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_a_crash_resumes_exactly_from_the_periodic_step_checkpoint(make_config, tmp_path, monkeypatch) -> None:
    common = [
        *BASE,
        "critic=dot",
        SMALL_CRITIC["dot"],
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "callbacks.model_checkpoint.every_n_train_steps=2",
    ]
    straight = train(make_config(*common, output_dir=tmp_path / "straight"))
    saved = _crash_in_epoch_0_validation(make_config(*common, output_dir=tmp_path / "cut"), monkeypatch)
    # the periodic one at step 2; none at step 4, the epoch's last batch (resumed there, Lightning would run the
    # epoch's validation and end without the epoch's logged sums)
    assert saved["global_step"] == 2
    _equal_runs(straight, train(make_config(*common, output_dir=tmp_path / "cut")))


def test_exact_resume_does_not_depend_on_the_preemption_callback(make_config, tmp_path, monkeypatch) -> None:
    # the concat critic draws its negatives from the global RNG: resumed without the RNG states, the weights differ
    common = [
        *_one_epoch("concat"),
        "callbacks.preemption_checkpoint=null",
        "callbacks.model_checkpoint.every_n_train_steps=2",
    ]
    straight = train(make_config(*common, output_dir=tmp_path / "straight"))
    saved = _crash_in_epoch_0_validation(make_config(*common, output_dir=tmp_path / "cut"), monkeypatch)
    assert saved["global_step"] == 2 and len(saved["rng_per_rank"]) == 1  # the module's, one rank
    assert not any("rng" in str(state) for state in saved["callbacks"].values())
    _equal_runs(straight, train(make_config(*common, output_dir=tmp_path / "cut")))


def test_finished_run_is_not_retrained_and_only_a_missing_evaluation_is_redone(make_config, tmp_path, caplog) -> None:
    # the finished mark is EpochCheckpoint's: it holds without the preemption callback
    config = [*_one_epoch(), "callbacks.preemption_checkpoint=null"]
    first = train(make_config(*config))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert first.metrics == written  # train() returns what the final evaluation wrote
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == 4 and final["callbacks"]["EpochCheckpoint"]["finished"] is True
    stamp = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        again = train(make_config(*config))
    assert again.trainer is None and again.metrics == written  # nothing trained, nothing written
    assert "is complete" in caplog.text and (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    (tmp_path / "metrics.json").unlink()  # as if stopped during the final evaluation
    redone = train(make_config(*config))
    assert redone.trainer.global_step == first.trainer.global_step == 4
    rewritten = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: v for k, v in rewritten.items() if not _varies(k)} == {
        k: v for k, v in written.items() if not _varies(k)
    }


def test_a_finished_run_that_writes_no_metrics_json_is_complete_too(make_config, tmp_path) -> None:
    config = [*_one_epoch(), "callbacks.final_evaluation=null"]
    train(make_config(*config))
    assert not (tmp_path / "metrics.json").exists()
    again = train(make_config(*config))
    assert again.trainer is None and again.metrics == {}  # not retrained, not "redoing the final evaluation"


def test_a_different_config_in_the_run_dir_is_refused_and_resume_false_starts_afresh(make_config, tmp_path) -> None:
    config = _one_epoch()
    train(make_config(*config))
    with pytest.raises(DIMError, match=r"differing keys: model\.lr.*resume=false"):
        train(make_config(*config, "model.lr=0.01"))
    fresh = train(make_config(*config, "model.lr=0.01", "resume=false"))
    assert fresh.trainer.global_step == 4 and fresh.trainer.lightning_module.hparams.run_config["model"]["lr"] == 0.01


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_shard_without_duplicates_and_train_batches_match_one_device(world_size) -> None:
    def batches(rank: int, drop_last: bool, shuffle: bool = True) -> list[list[int]]:
        sampler = EpochPermutationSampler(23, seed=5, shuffle=shuffle)
        return list(IndexBatchSampler(sampler, 4, drop_last, rank, world_size))

    val = [i for rank in range(world_size) for batch in batches(rank, False, shuffle=False) for i in batch]
    assert len(val) == len(set(val)) == 23 - 23 % world_size  # each image at most once, no padding
    shapes = {tuple(len(b) for b in batches(rank, False, shuffle=False)) for rank in range(world_size)}
    assert len(shapes) == 1  # every rank runs the same batch shapes (the gathered negatives need it)
    order = EpochPermutationSampler(23, seed=5).order()
    assert [i for b in batches(1, True) for i in b] == rank_shard(order, 1, world_size)[
        : len(batches(1, True)) * 4
    ].tolist()


def test_submitit_requeues_after_the_checkpoint_is_saved(make_config, tmp_path, monkeypatch) -> None:
    import signal

    saved_steps = []

    def checkpoint_and_try_requeue(signum, frame) -> None:  # the name submitit's handler has
        saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        saved_steps.append((signum, saved["global_step"]))

    previous = signal.signal(signal.SIGUSR2, checkpoint_and_try_requeue)  # as submitit installs it in a job
    try:
        with pytest.raises(Preempted) as raised:
            train(
                make_config(
                    *_one_epoch(), "debug=preempt", "callbacks.preempt.step=1", "callbacks.preempt.signal=SIGUSR2"
                )
            )
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert raised.value.code == 128 + signal.SIGUSR2
    assert saved_steps == [(signal.SIGUSR2, 2)]  # requeued once, after last.ckpt held the stopped step


def test_submitit_slurm_launcher_maps_nodes_and_devices_and_requeues() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dim_lightning.config import CONF_DIR
    from dim_lightning.config.builders import TRAINER_SETTINGS

    GlobalHydra.instance().clear()
    overrides = ["hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)  # one task per GPU
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout >= 1  # signal before the end, requeue
    assert cfg.trainer.num_nodes == 2 and TRAINER_SETTINGS == {"use_distributed_sampler": False}  # build_trainer's


# ---- through the command line (slow lane) --------------------------------------------------------------
# the reliability tests' small CLI run, with the final evaluation (lean) included
CLI = [
    *(arg for arg in RELIABILITY_CLI if not arg.startswith("eval.")),
    "eval.random_init_baseline=false",
    "eval.suite.retrieval=false",
]


def _same_numbers(straight_dir, run_dir) -> None:
    expected = json.loads((straight_dir / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert set(got) == set(expected)
    for key, value in expected.items():
        if not _varies(key):
            assert got[key] == value, key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("devices", "resumed_at"),
    [
        ([], "step 9 of epoch 1 (batch 3 of it)"),  # one process reads its flag after every step
        (["trainer=ddp_sim"], "step 10 of epoch 1 (batch 4 of it)"),  # ranks compare flags every 10 steps
    ],
    ids=["one_process", "ddp_sim"],
)
def test_cli_same_command_after_sigterm_mid_epoch_ends_with_the_uninterrupted_metrics(
    tmp_path, devices, resumed_at
) -> None:
    from tests.conftest import run_cli

    command = [*CLI, *devices, "debug=preempt", "callbacks.preempt.step=8"]  # stop inside epoch 1 of 2
    straight = run_cli(*CLI, *devices, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path, timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]
    run_dir = tmp_path / "cut"
    cut = run_cli(*command, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=900)
    assert cut.returncode == 143 and "Traceback" not in cut.stderr + cut.stdout, cut.stderr[-3000:]
    assert "Stopped by SIGTERM at step" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists()
    resumed = run_cli(*command, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {resumed_at}" in (run_dir / "train.log").read_text()
    torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)  # every rank's state
    _same_numbers(tmp_path / "straight", run_dir)
    again = run_cli(*command, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=900)
    assert again.returncode == 0 and "is complete" in again.stdout + again.stderr
    other = run_cli(*command, "model.beta=0.5", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=900)
    assert other.returncode == 2 and "differing keys: model.beta" in other.stderr, other.stderr[-3000:]
    assert "Traceback" not in other.stderr


@pytest.mark.slow
def test_same_command_resume_continues_the_same_offline_wandb_run(
    make_config, tmp_path, monkeypatch, offline_wandb
) -> None:
    command = [*_one_epoch(), "logger=wandb", "debug=preempt", "callbacks.preempt.step=1"]
    with pytest.raises(Preempted):
        train(make_config(*command))
    import wandb

    run_id = wandb.run.id if wandb.run is not None else None
    if wandb.run is not None:
        wandb.run.finish()
    assert run_id is not None
    resumed = train(make_config(*command)).trainer  # the same command: resumes, and the same W&B run
    assert resumed.logger.version == run_id and resumed.global_step == 4
    resumed.logger.experiment.finish()
