"""Data modules on data written in the real formats: layouts, caching, bad input, and training through train.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dim_lightning.data.cifar10 import CIFAR10DataModule
from dim_lightning.data.image_folder import ImageFolderDataModule
from dim_lightning.data.tiny_imagenet import TinyImageNetDataModule
from dim_lightning.errors import DIMError
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC, run_cli
from tests.datasets import WNIDS, write_cifar10, write_image_folder, write_tiny_imagenet


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_imagenet(tmp_path / "tiny-imagenet-200")


def test_tiny_imagenet_reads_the_real_layout(tiny) -> None:
    datamodule = TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8)
    datamodule.setup()
    train_images, train_labels = datamodule.train_set.all_images()
    selection_labels = datamodule.val_set.labels  # carved from train/: 10%, stratified
    test_images, test_labels = datamodule.test_set.all_images()  # the official val/
    assert train_images.shape == (32, 3, 32, 32) and train_images.dtype == torch.uint8
    assert sorted(selection_labels.tolist()) in ([0, 0, 1, 2], [0, 1, 1, 2], [0, 1, 2, 2])
    assert torch.cat([train_labels, selection_labels]).bincount().tolist() == [12, 12, 12]
    assert test_images.shape == (12, 3, 32, 32)
    val_names = sorted(p.name for p in (tiny / "val" / "images").iterdir())  # val_0, val_1, val_10, ...
    assert test_labels.tolist() == [int(name[4:-5]) % 3 for name in val_names]  # as val_annotations.txt says
    assert datamodule.class_names == ["goldfish", "European fire salamander", "bullfrog"]
    grayscale = test_images[val_names.index("val_3.JPEG")]  # saved as a one-channel JPEG, converted to RGB
    assert torch.equal(grayscale[0], grayscale[1]) and torch.equal(grayscale[1], grayscale[2])


def test_cache_is_reused_and_rebuilt_when_the_data_changes(tiny) -> None:
    TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()
    cache = tiny / ".dim_cache" / "tiny_imagenet_train_32.npy"
    built = cache.stat().st_mtime_ns
    TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()
    assert cache.stat().st_mtime_ns == built  # opened, not rebuilt
    extra = tiny / "train" / WNIDS[0] / "images" / "extra.JPEG"
    extra.write_bytes((tiny / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG").read_bytes())
    datamodule = TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8)
    datamodule.setup()
    assert len(datamodule.train_set) + len(datamodule.val_set) == 37
    assert not list(cache.parent.glob("*.tmp-*"))


def test_corrupt_jpeg_is_an_error_or_a_documented_skip(tiny) -> None:
    bad = tiny / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_5.JPEG"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(DIMError, match=f"{WNIDS[1]}_5.JPEG.*skip_bad"):
        TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()
    assert not list((tiny / ".dim_cache").glob("*train*"))  # nothing half-written
    datamodule = TinyImageNetDataModule(root=str(tiny), image_size=32, skip_bad=True, batch_size=8)
    with pytest.warns(UserWarning, match=f"{WNIDS[1]}_5.JPEG"):
        datamodule.setup()
    labels = torch.cat([datamodule.train_set.labels, datamodule.val_set.labels])
    assert len(labels) == 35 and labels.tolist().count(1) == 11


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "wnids.txt").unlink(), "wnids.txt is missing"),
        (lambda root: [p.unlink() for p in (root / "train" / WNIDS[2] / "images").iterdir()], "holds no images"),
        (lambda root: (root / "val" / "images" / "stray.JPEG").write_bytes(b"x"), "have no line in"),
    ],
)
def test_tiny_imagenet_layout_errors(tiny, damage, message: str) -> None:
    damage(tiny)
    with pytest.raises(DIMError, match=message):
        TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()


def test_missing_root_names_the_layout_through_the_cli(tmp_path) -> None:
    result = run_cli("data=tiny_imagenet", f"data.root={tmp_path / 'nowhere'}", "logger=none", cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a folder" in result.stderr and "wnids.txt" in result.stderr and "Traceback" not in result.stderr


def test_image_folder_and_cifar10_formats(tmp_path) -> None:
    folder = ImageFolderDataModule(
        root=str(write_image_folder(tmp_path / "folder")), image_size=16, val_fraction=0.2, batch_size=8
    )
    folder.setup()
    # 30 images: test_fraction 0.1 -> 3 test; val_fraction 0.2 of the other 27 -> 5 val, 22 train
    assert folder.train_set.all_images()[0].shape == (22, 3, 16, 16)
    assert (len(folder.val_set), len(folder.test_set)) == (5, 3)
    assert folder.class_names == ["class_0", "class_1", "class_2"]
    cifar = CIFAR10DataModule(root=str(write_cifar10(tmp_path / "cifar")), batch_size=8)
    cifar.setup()
    assert (len(cifar.train_set), len(cifar.val_set), len(cifar.test_set)) == (90, 10, 20) and cifar.num_classes == 10
    assert cifar.train_set.all_images()[0].shape[1:] == (3, 32, 32)
    (tmp_path / "folder" / "class_1" / "0.jpg").unlink()
    for path in (tmp_path / "folder" / "class_1").iterdir():
        path.unlink()
    with pytest.raises(DIMError, match="class_1 holds no images"):
        ImageFolderDataModule(root=str(tmp_path / "folder")).setup()


@pytest.mark.parametrize(
    "dataset",
    [
        pytest.param("tiny_imagenet", marks=pytest.mark.slow),
        "image_folder",
        pytest.param("cifar10", marks=pytest.mark.slow),
    ],
)
def test_training_a_few_steps_on_each_format(make_config, tmp_path, dataset: str) -> None:
    writers = {"tiny_imagenet": write_tiny_imagenet, "image_folder": write_image_folder, "cifar10": write_cifar10}
    root = writers[dataset](tmp_path / dataset)
    cfg = make_config(
        *FAST,
        SMALL_CRITIC["dot"],
        f"data={dataset}",
        f"data.root={root}",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "eval.random_init_baseline=false",
        "eval.suite.places=[Y]",
        "eval.suite.mlp=false",
        *(["data.image_size=32"] if dataset != "cifar10" else []),
    )
    trainer = train(cfg).trainer
    assert trainer.global_step > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["probe/val_acc"] <= 1.0 and 0.0 <= metrics["knn/val_acc"] <= 1.0
    features = np.load(tmp_path / "features.npz")
    for split in ("val", "test"):
        labels = features["labels"][features["split"] == split]
        assert labels.tolist() == trainer.datamodule.split(split).labels.tolist()
