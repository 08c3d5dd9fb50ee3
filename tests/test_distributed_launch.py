"""Multi-device runs as users start them: `trainer.devices=N` picks DDP by itself, and `trainer=ddp_sim` runs the
subprocess launcher real GPU runs use (rank 1 re-runs train.py through Hydra) on 2 CPU processes."""

from __future__ import annotations

import json

import pytest
import torch

from dim_lightning.distributed import HydraDDPStrategy, distributed_options
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


def test_ranks_agree_on_a_stop_signal_every_n_batches_not_every_batch(tmp_path) -> None:
    from types import SimpleNamespace

    import torch.distributed as dist

    from dim_lightning.distributed import agree_on_signals_every

    kills = []
    loop = SimpleNamespace(total_batch_idx=0, _broadcast_sigterm_tensor=None)
    connector = SimpleNamespace(received_sigterm=False, _sigterm_notifier_fn=None)
    strategy = SimpleNamespace(root_device=torch.device("cpu"), launcher=SimpleNamespace(kill=kills.append))
    trainer = SimpleNamespace(_signal_connector=connector, fit_loop=SimpleNamespace(epoch_loop=loop), strategy=strategy)
    agree_on_signals_every(trainer, every=5)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with torch.profiler.profile() as profiler:
            for batch in range(10):  # what Lightning calls before every training batch
                loop.total_batch_idx = batch
                loop._broadcast_sigterm_tensor()
        calls = [e.name for e in profiler.events() if e.name.startswith("gloo:")]
        assert len(calls) == 2  # batches 0 and 5
        connector._sigterm_notifier_fn(15, None)  # SIGTERM arrives during batch 11
        connector._sigterm_notifier_fn(15, None)
        assert kills == [15] and not connector.received_sigterm  # forwarded once; not acted on yet
        for batch in (11, 12, 13, 14):
            loop.total_batch_idx = batch
            loop._broadcast_sigterm_tensor()
            assert not connector.received_sigterm
        loop.total_batch_idx = 15
        loop._broadcast_sigterm_tensor()
        assert connector.received_sigterm  # every rank learns it at the same batch; Lightning stops at its end
    finally:
        dist.destroy_process_group()


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
