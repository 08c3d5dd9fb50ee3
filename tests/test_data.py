"""Data modules on data written in the real formats: layouts, caching, bad input, and training through train.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dim_lightning.data.cifar10 import CIFAR10DataModule
from dim_lightning.data.decode import PixelBudget, UnusableImage, decode_image
from dim_lightning.data.image_folder import ImageFolderDataModule
from dim_lightning.data.tiny_imagenet import TinyImageNetDataModule
from dim_lightning.errors import DIMError
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC, run_cli
from tests.datasets import WNIDS, write_blank_png, write_cifar10, write_image_folder, write_tiny_imagenet


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


@pytest.mark.slow  # a data set refused at set-up, through the real command line (in process: test_cifar10.py)
def test_missing_root_names_the_layout_through_the_cli(tmp_path) -> None:
    result = run_cli("data=tiny_imagenet", f"data.root={tmp_path / 'nowhere'}", "logger=none", cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a folder" in result.stderr and "wnids.txt" in result.stderr and "Traceback" not in result.stderr


def test_image_folder_and_cifar10_formats(tmp_path, capfd) -> None:
    folder = ImageFolderDataModule(
        root=str(write_image_folder(tmp_path / "folder")), image_size=16, val_fraction=0.2, batch_size=8
    )
    with pytest.warns(UserWarning, match=r"the val split has only 5 images, so its accuracies move in steps of 20.0%"):
        folder.setup()
    assert capfd.readouterr().out == ""  # off a terminal, no blank line where the decoding bar would be
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


def _folder_with(tmp_path, replace: dict[str, Callable[[Path], object]]) -> Path:
    """A 3-class image folder (40 px, 10 images a class) with some files replaced by `replace[name](path)`."""
    root = write_image_folder(tmp_path / "folder")
    for name, write in replace.items():
        (root / name).unlink()
        write(root / name)
    return root


BIG = (7800, 7800)  # 60.8 M pixels: under PIL's own limit (89 M), over the 50 M a data set's photo stays under


def test_an_image_over_the_pixel_limit_is_a_bad_file_with_its_own_message(tmp_path) -> None:
    root = _folder_with(tmp_path, {"class_1/3.png": lambda path: write_blank_png(path, *BIG)})
    with pytest.raises(
        DIMError,
        match=r"1 image file\(s\) have more than 50000000 pixels: .*class_1/3.png \(images "
        r"over 50 megapixels are not decoded.*shrink them or delete them\).*data.skip_bad=true",
    ):
        ImageFolderDataModule(root=str(root), image_size=16, batch_size=8).setup()
    datamodule = ImageFolderDataModule(root=str(root), image_size=16, batch_size=8, skip_bad=True)
    with pytest.warns(UserWarning, match="have more than 50000000 pixels: .*class_1/3.png"):
        datamodule.setup()
    assert sum(len(datamodule.split(split)) for split in ("train", "val", "test")) == 29


DECODE_MEMORY = """
import json, resource, sys, warnings
from pathlib import Path
from dim_lightning.data.cache import cached_images
files = [Path(name) for name in sys.argv[1:]]
root = files[0].parent
cached_images(files[:1], root, root / "warm.npy", 32)  # PIL's plugins loaded, threads started
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings(record=True):
    images, kept = cached_images(files, root, root / "cache.npy", 32, skip_bad=True)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_mib": grown / 1024, "kept": kept.tolist()}))
"""


def test_decoding_huge_images_costs_bounded_memory(tmp_path) -> None:
    """Peak memory (RSS) of building a cache, in a fresh process: a PNG over the pixel limit is refused before it
    is decoded, a JPEG over it is decoded at 1/8 scale, and four images just under it decode one at a time (the old
    decoder held about 470 MB for the first, 290 MB for the second, 375 MB per thread for the last)."""
    Image.new("L", (8000, 7500), 128).save(tmp_path / "big.jpg", quality=50)
    files = [write_blank_png(tmp_path / "small.png", 40, 30), write_blank_png(tmp_path / "big.png", *BIG)]
    files += [tmp_path / "big.jpg", *[write_blank_png(tmp_path / f"near_{i}.png", 7000, 7000) for i in range(4)]]
    code = [sys.executable, "-c", DECODE_MEMORY, *map(str, files)]
    measured = json.loads(subprocess.run(code, capture_output=True, text=True, check=True).stdout)
    assert measured["kept"] == [0, 2, 3, 4, 5, 6]
    assert measured["grown_mib"] < 300, measured


def test_the_pixel_budget_lets_small_images_decode_together_and_a_large_one_alone() -> None:
    budget, lock, inside, most = PixelBudget(100), threading.Lock(), [0], [0]
    together = threading.Barrier(5, timeout=30)

    def decode(pixels: int, meet: bool) -> None:
        with budget.hold(pixels):
            with lock:
                inside[0] += pixels
                most[0] = max(most[0], inside[0])
            if meet:
                together.wait()  # five images of 20 pixels fit at once: all five are inside together
            with lock:
                inside[0] -= pixels

    for pixels, meet in ((20, True), (60, False), (100, False)):
        threads = [threading.Thread(target=decode, args=(pixels, meet)) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert most[0] <= 100 and not together.broken
    assert budget.free == 100


def _train_images(datamodule) -> tuple:
    datamodule.setup()
    return tuple(datamodule.split(split).all_images() for split in ("train", "val", "test"))


def _npy(array) -> Callable[[Path], None]:
    return lambda path: np.save(path, array)


def _meta(change: dict | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if isinstance(change, bytes):
            path.write_bytes(change)
        else:
            path.write_text(json.dumps({**json.loads(path.read_text()), **change}))

    return write


def _huge(path: Path) -> None:
    with path.open("ab") as file:
        file.truncate(100 * 2**20)


SHIPPED_CACHES = {
    "wrong shape": ("npy", _npy(np.zeros((24, 3, 8, 8), np.uint8)), "is not uint8 images of shape (24, 3, 16, 16)"),
    "wrong dtype": ("npy", _npy(np.zeros((24, 3, 16, 16), np.float32)), "is not uint8 images"),
    "fewer images than kept": ("npy", _npy(np.zeros((3, 3, 16, 16), np.uint8)), "is not uint8 images"),
    "not an npy": ("npy", lambda path: path.write_bytes(b"\x93NUMPY garbage"), "numpy cannot open"),
    "pickled objects": ("npy", _npy(np.array([{}], dtype=object)), "numpy cannot open"),
    "kept out of range": ("json", _meta({"kept": [*range(23), 99]}), "not strictly increasing in 0..23"),
    "kept unsorted": ("json", _meta({"kept": [1, 0, *range(2, 24)]}), "not strictly increasing"),
    "kept repeated": ("json", _meta({"kept": [0, 0, *range(2, 24)]}), "not strictly increasing"),
    "kept not ints": ("json", _meta({"kept": ["0", *range(1, 24)]}), "not a list of ints"),
    "kept not a list": ("json", _meta({"kept": 5}), "not a list of ints"),
    "meta not JSON": ("json", _meta(b"\xff{not json"), "is not JSON"),
    "meta nested deep": ("json", _meta(b"[" * 3000), "is not JSON"),
    "meta huge": ("json", _huge, "more than the 4480 such a file needs"),
}


@pytest.mark.parametrize(("part", "damage", "message"), SHIPPED_CACHES.values(), ids=SHIPPED_CACHES.keys())
def test_a_shipped_cache_that_does_not_hold_what_it_says_is_rebuilt(tmp_path, part, damage, message) -> None:
    """A data folder handed over with a .dim_cache whose fingerprint matches its files: the cache is checked
    against what it must hold, and rebuilt (with a warning that says why) when it does not."""
    root = write_image_folder(tmp_path / "folder")
    settings = {"image_size": 16, "batch_size": 8}
    expected = _train_images(ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "mine"), **settings))
    _train_images(ImageFolderDataModule(root=str(root), **settings))  # the cache that comes with the folder
    damage(root / ".dim_cache" / f"image_folder_train_16.{part}")
    with pytest.warns(UserWarning, match=rf"image_folder_train_16.npy is not usable \(.*{re.escape(message)}"):
        found = _train_images(ImageFolderDataModule(root=str(root), **settings))
    for (images, labels), (expected_images, expected_labels) in zip(found, expected, strict=True):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_a_cache_file_that_links_elsewhere_is_replaced_not_followed(tmp_path) -> None:
    root = write_image_folder(tmp_path / "folder")
    ImageFolderDataModule(root=str(root), image_size=16, batch_size=8).setup()
    cache = root / ".dim_cache" / "image_folder_train_16.npy"
    elsewhere = tmp_path / "elsewhere.npy"
    cache.rename(elsewhere)
    cache.symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    with pytest.warns(UserWarning, match=r"image_folder_train_16.npy is not a regular file"):
        ImageFolderDataModule(root=str(root), image_size=16, batch_size=8).setup()
    assert not cache.is_symlink() and elsewhere.read_bytes() == before


def test_an_image_that_is_postscript_inside_never_reaches_ghostscript(tmp_path, monkeypatch) -> None:
    """PIL picks a plugin by content: an EPS named x.png went to its EPS plugin, which runs Ghostscript on the
    file's PostScript. A `gs` on PATH (here a fake that leaves a mark) is never started."""
    mark, fake = tmp_path / "GS_RAN", tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho ran >> {mark}\n[ "$1" = --version ] && echo 10.02.1\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    eps = tmp_path / "x.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n(theirs) print\nshowpage\n%%EOF\n")
    with pytest.raises(UnusableImage):
        decode_image(eps, 16)
    assert not mark.exists()


def _repeat_first_wnid(root: Path) -> None:
    _add_wnid(root, (root / "wnids.txt").read_text().split()[0])


def _add_wnid(root: Path, wnid: str) -> None:
    (root / "wnids.txt").write_text("\n".join([*(root / "wnids.txt").read_text().split(), wnid]))


@pytest.mark.parametrize("link", ["a class folder", "an image", "the train folder"])
def test_image_links_in_a_data_folder_are_refused_unless_follow_links(tmp_path, link: str) -> None:
    """A folder from someone else whose class folder (or image) links to the victim's own photos: training would
    decode them into that folder's .dim_cache and learn from them."""
    theirs = write_image_folder(tmp_path / "victim", classes=1)
    root = write_image_folder(tmp_path / "folder", classes=2)
    if link == "a class folder":
        (root / "class_9").symlink_to(theirs / "class_0", target_is_directory=True)
    elif link == "an image":
        (root / "class_0" / "z.png").symlink_to(theirs / "class_0" / "1.png")
    else:
        write_image_folder(root / "val", classes=2)
        (root / "train").symlink_to(tmp_path / "victim", target_is_directory=True)
        (theirs / "class_1").mkdir()
        (theirs / "class_1" / "x.png").symlink_to(theirs / "class_0" / "1.png")
    with pytest.raises(DIMError, match=r"is a symbolic link .*cp -rL.*data.follow_links=true if the links are yours"):
        ImageFolderDataModule(root=str(root), image_size=16, batch_size=8).setup()
    assert not list(root.glob(".dim_cache/*.npy"))
    ImageFolderDataModule(root=str(root), image_size=16, batch_size=8, follow_links=True).setup()
    assert list(root.glob(".dim_cache/*.npy"))


@pytest.mark.parametrize("link", ["a batch", "the batches folder"])
def test_cifar10_refuses_linked_batches_unless_follow_links(tmp_path, link: str) -> None:
    """A CIFAR-10 folder from someone else whose data_batch_1 (or cifar-10-batches-py/) links to the victim's
    own: it was read and trained on, silently."""
    theirs = write_cifar10(tmp_path / "victim") / "cifar-10-batches-py"
    root = write_cifar10(tmp_path / "cifar")
    if link == "a batch":
        (root / "cifar-10-batches-py" / "data_batch_1").unlink()
        (root / "cifar-10-batches-py" / "data_batch_1").symlink_to(theirs / "data_batch_1")
    else:
        shutil.rmtree(root / "cifar-10-batches-py")
        (root / "cifar-10-batches-py").symlink_to(theirs, target_is_directory=True)
    with pytest.raises(DIMError, match=r"is a symbolic link .*data\.follow_links=true if the links are yours"):
        CIFAR10DataModule(root=str(root), batch_size=8).setup()
    CIFAR10DataModule(root=str(root), batch_size=8, follow_links=True).setup()


def test_tiny_imagenet_refuses_a_linked_images_folder(tiny, tmp_path) -> None:
    images = tiny / "val" / "images"
    images.rename(tmp_path / "images")
    images.symlink_to(tmp_path / "images", target_is_directory=True)
    with pytest.raises(DIMError, match=r"val/images is a symbolic link"):
        TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()
    TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8, follow_links=True).setup()


@pytest.mark.parametrize("link", ["to a folder", "dangling", "a file"])
def test_a_dim_cache_link_in_the_data_folder_is_refused_and_nothing_is_written_there(tmp_path, link: str) -> None:
    root = write_image_folder(tmp_path / "folder")
    target = tmp_path / "theirs"
    if link == "to a folder":
        target.mkdir()
    if link == "a file":
        (root / ".dim_cache").write_text("x")
    else:
        (root / ".dim_cache").symlink_to(target)
    with pytest.raises(DIMError, match=r"\.dim_cache is a symbolic link or not a folder.*set data.cache_dir"):
        ImageFolderDataModule(root=str(root), image_size=16, batch_size=8).setup()
    assert (list(target.iterdir()) == []) if link == "to a folder" else not target.exists()
    ImageFolderDataModule(root=str(root), image_size=16, batch_size=8, cache_dir=str(tmp_path / "mine")).setup()
    assert len(list((tmp_path / "mine").glob("*.npy"))) == 3


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: _huge(root / "words.txt"), "words.txt is 104857600 bytes, more than the 16777216"),
        (lambda root: (root / "wnids.txt").write_bytes(b"\xffn01443537\n"), "wnids.txt is not UTF-8 text"),
        (lambda root: _repeat_first_wnid(root), "more than once: its images would be read under two labels"),
        (lambda root: _add_wnid(root, "../../theirs"), "lists '../../theirs', a path, not a class folder's name"),
        (lambda root: _add_wnid(root, "/home"), "lists '/home', a path"),
        (lambda root: (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\n"), "class '' is not in wnids"),
    ],
)
def test_tiny_imagenet_text_files_are_bounded_and_checked(tiny, damage, message: str) -> None:
    damage(tiny)
    with pytest.raises(DIMError, match=re.escape(message)):
        TinyImageNetDataModule(root=str(tiny), image_size=32, batch_size=8).setup()
