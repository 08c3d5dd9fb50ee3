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


def _equal_runs(straight, resumed) -> None:
    expected = straight.trainer.lightning_module.state_dict()
    for name, tensor in resumed.trainer.lightning_module.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for key, value in straight.metrics.items():
        if key != "train/img_per_s":  # a timing
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


def test_a_crash_resumes_exactly_from_the_periodic_step_checkpoint(make_config, tmp_path, monkeypatch) -> None:
    common = [
        *BASE,
        "critic=dot",
        SMALL_CRITIC["dot"],
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "callbacks.model_checkpoint.every_n_train_steps=3",
    ]
    straight = train(make_config(*common, output_dir=tmp_path / "straight"))
    from dim_lightning.callbacks import epoch_means

    calls = {"n": 0}
    original = epoch_means.ResumableEpochMeans.on_train_batch_end

    def crash_at_batch_5(self, trainer, *args) -> None:  # a kill without warning after step 5: no save
        original(self, trainer, *args)
        calls["n"] += 1
        if calls["n"] == 5:
            raise _Crash

    monkeypatch.setattr(epoch_means.ResumableEpochMeans, "on_train_batch_end", crash_at_batch_5)
    with pytest.raises(_Crash):
        train(make_config(*common, output_dir=tmp_path / "cut"))
    monkeypatch.setattr(epoch_means.ResumableEpochMeans, "on_train_batch_end", original)
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4  # epoch 0's end (step 4) is the last save before the crash at step 5...
    assert saved["global_step"] != 3  # ...after the periodic one at step 3, which it replaced
    _equal_runs(straight, train(make_config(*common, output_dir=tmp_path / "cut")))


def test_finished_run_is_not_retrained_and_only_a_missing_evaluation_is_redone(make_config, tmp_path, caplog) -> None:
    config = _one_epoch()
    first = train(make_config(*config))
    written = json.loads((tmp_path / "metrics.json").read_text())
    stamp = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        again = train(make_config(*config))
    assert again.trainer is None and again.metrics == written  # nothing trained, nothing written
    assert "is complete" in caplog.text and (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    (tmp_path / "metrics.json").unlink()  # as if stopped during the final evaluation
    redone = train(make_config(*config))
    assert redone.trainer.global_step == first.trainer.global_step == 4
    rewritten = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: v for k, v in rewritten.items() if k != "train/img_per_s"} == {
        k: v for k, v in written.items() if k != "train/img_per_s"
    }


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
