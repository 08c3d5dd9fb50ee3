"""Which split each number reads: model selection (`*/val_acc`, optimized_metric) reads the split carved from
the training images, never the official held-out split (`*/test_acc`); the epoch probe scores the same
eval-mode features as an offline probe; a one-image last validation batch does not break the online probe."""

from __future__ import annotations

import pytest
import torch

from dim_lightning.eval.features import extract_features
from dim_lightning.eval.metrics import optimized_value
from dim_lightning.eval.probe import linear_probe_accuracy
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC
from tests.datasets import write_tiny_imagenet


def _scramble_official_labels(root) -> None:
    """Every official val/ image gets the next class's wnid: its labels become garbage."""
    wnids = (root / "wnids.txt").read_text().split()
    annotations = root / "val" / "val_annotations.txt"
    lines = []
    for line in annotations.read_text().splitlines():
        name, wnid, *box = line.split("\t")
        lines.append("\t".join([name, wnids[(wnids.index(wnid) + 1) % len(wnids)], *box]))
    annotations.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_optimized_metric_never_reads_the_official_split(make_config, tmp_path) -> None:
    runs = {}
    for name in ("clean", "garbage"):
        root = write_tiny_imagenet(tmp_path / name / "tiny-imagenet-200")
        if name == "garbage":
            _scramble_official_labels(root)
        cfg = make_config(
            *FAST,
            SMALL_CRITIC["dot"],
            "data=tiny_imagenet",
            f"data.root={root}",
            "data.image_size=32",
            "data.batch_size=8",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            output_dir=tmp_path / name / "run",
        )
        metrics = train(cfg).metrics
        runs[name] = (metrics, optimized_value(metrics, cfg.optimized_metric), cfg.optimized_metric)
    (clean, clean_value, metric), (garbage, garbage_value, _) = runs["clean"], runs["garbage"]
    assert metric == "probe/val_acc" and clean_value == garbage_value
    # Every number but the official split's (and the clock) is the same: nothing else read those labels.
    same = [k for k in clean if "test" not in k and not k.startswith("time/") and k != "run_id"]
    assert "knn/val_acc" in same and "baseline/pixels_probe_val_acc" in same
    assert {k: garbage[k] for k in same} == {k: clean[k] for k in same}
    assert "probe/test_acc" in garbage and "knn/test_acc" in garbage


@pytest.mark.slow
def test_epoch_probe_equals_an_offline_probe_of_the_same_weights(make_config) -> None:
    cfg = make_config(
        *FAST,
        SMALL_CRITIC["dot"],
        "trainer.max_epochs=1",
        "callbacks.linear_probe.every_n_epochs=1",
        "callbacks.knn_probe.every_n_epochs=1",
        "eval.final=false",
    )
    trainer = train(cfg).trainer
    logged = float(trainer.callback_metrics["probe/epoch_val_acc"])
    module, datamodule = trainer.lightning_module, trainer.datamodule
    train_f, train_y = extract_features(module.encoder, datamodule.eval_loader("train"), datamodule.normalize, "cpu")
    val_f, val_y = extract_features(module.encoder, datamodule.eval_loader("val"), datamodule.normalize, "cpu")
    offline = linear_probe_accuracy(train_f["Y"], train_y, val_f["Y"], val_y)
    assert logged == pytest.approx(offline, abs=0.01)
    assert 0.0 <= float(trainer.callback_metrics["knn/epoch_val_acc"]) <= 1.0


def test_a_last_validation_batch_of_one_image_trains_with_the_online_probe(make_config) -> None:
    # 90 training images: 81 train + 9 carved for val; batch 8 leaves a last val batch of one image.
    cfg = make_config(
        *FAST,
        SMALL_CRITIC["dot"],
        "data=synthetic",
        "data.num_train=90",
        "data.num_val=16",
        "data.image_size=16",
        "data.batch_size=8",
        "encoder=dcgan32",
        "trainer.max_epochs=1",
        "eval.final=false",
    )
    trainer = train(cfg).trainer
    assert len(trainer.datamodule.val_set) % 8 == 1
    assert torch.isfinite(trainer.callback_metrics["probe/online_trainmode_val_acc"])
