"""Multi-device runs as users start them: `trainer.devices=N` picks DDP by itself, and `trainer=ddp_sim` runs the
subprocess launcher real GPU runs use (rank 1 re-runs train.py through Hydra) on 2 CPU processes."""

from __future__ import annotations

import json

import pytest
import torch

from dim_lightning.run.distributed import HydraDDPStrategy, distributed_options
from tests.conftest import run_cli
from tests.test_multirun import TINY_RUN, read_summary


@pytest.mark.parametrize(
    ("overrides", "ddp", "sync_batchnorm"),
    [
        ([], False, False),  # the laptop default: one device, no DDP
        (["trainer.devices=2"], True, torch.cuda.is_available()),  # accelerator auto: no SyncBatchNorm on CPU
        (["trainer.accelerator=gpu", "trainer.devices=4"], True, True),  # the design card's command
        (["trainer=gpu", "trainer.devices=2"], True, True),
        (["trainer=gpu", "trainer.strategy=ddp"], True, False),  # 1 GPU through the DDP code path
        (["trainer=ddp"], True, True),
        (["trainer=ddp_sim"], True, False),  # SyncBatchNorm has no CPU kernel
        (["trainer.accelerator=gpu", "trainer.devices=4", "trainer.sync_batchnorm=false"], True, False),  # kept
        (["trainer=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn"], False, False),  # explicit: kept
    ],
)
def test_devices_pick_ddp_and_synced_batchnorm_without_extra_flags(make_config, overrides, ddp, sync_batchnorm):
    trainer = make_config(*overrides).trainer
    options = distributed_options(trainer)
    assert isinstance(options.get("strategy"), HydraDDPStrategy) == ddp
    assert options.get("sync_batchnorm", trainer.sync_batchnorm) == sync_batchnorm  # what the Trainer gets
    if ddp:  # synced BatchNorm: same statistics on every rank, so DDP need not broadcast buffers each forward
        assert options["strategy"]._ddp_kwargs["broadcast_buffers"] is not sync_batchnorm


def test_ranks_compare_stop_signals_every_n_steps(tmp_path, monkeypatch) -> None:
    """The callback's cadence, with its reads of Lightning's loop (tested on a real Trainer in
    test_lightning_compat.py) standing in; Lightning's own per-step broadcast is off (tested there too)."""
    import signal
    from types import SimpleNamespace

    from dim_lightning.callbacks import preemption

    reductions, stops = [], []
    monkeypatch.setattr(preemption, "accumulating", lambda trainer: False)
    monkeypatch.setattr(preemption, "epochs_last_batch", lambda trainer: False)
    monkeypatch.setattr(preemption, "stop_at_next_check", lambda trainer: stops.append(trainer.global_step))
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all: reductions.append(flag) or flag)
    trainer = SimpleNamespace(world_size=2, global_step=0, max_steps=-1, strategy=strategy)
    callback = preemption.PreemptionCheckpoint(str(tmp_path), check_every_n_steps=5)
    for step in range(1, 11):  # after each optimizer step, on every rank
        trainer.global_step = step
        if step == 6:
            callback.received = signal.SIGTERM  # reaches this rank during step 6
        callback.on_train_batch_end(trainer, None, {}, None, step - 1)
    assert stops == [10]  # acted on at the next comparison, by every rank
    assert reductions == [False, True]  # one collective at steps 5 and 10, none in between


def _assert_rank0_wrote_one_run(run_dir) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["probe/val_acc"] <= 1 and metrics["global_step"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "retrieval_l2.png").is_file() and (run_dir / "retrieval_cos.png").is_file()
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran through Hydra, in this run dir


DDP_RUN = ["trainer=ddp_sim", *TINY_RUN, "eval.suite.retrieval=true"]


@pytest.mark.slow
def test_ddp_sim_relaunches_train_py_into_the_same_run_dir(tmp_path) -> None:
    result = run_cli(*DDP_RUN, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # Lightning logs through Hydra's console handler
    runs = list((tmp_path / "outputs").glob("train/runs/*"))
    assert len(runs) == 1  # rank 1 wrote no run dir of its own
    _assert_rank0_wrote_one_run(runs[0])


@pytest.mark.slow
def test_ddp_sim_under_multirun_runs_each_job_once(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "model.beta=0.5,1.5", f"hydra.sweep.dir={sweep_dir}", *DDP_RUN, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's own relaunch command would re-run the whole sweep from rank 1: 2 jobs, not 4 or more
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
    assert not (tmp_path / "outputs").exists()
    for job in ("0", "1"):
        _assert_rank0_wrote_one_run(sweep_dir / job)
    assert sorted(r["overrides"] for r in read_summary(sweep_dir)) == ["model.beta=0.5", "model.beta=1.5"]
