"""CIFAR-10 at data.image_size (resized, not silently 32 px), its batch files read without running code, at a
cost bounded by what a real batch file needs and checked against their documented format, and a short
command-line run on it whose train.log carries none of the known, non-actionable noise."""

from __future__ import annotations

import os
import pickle
import re
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dim_lightning.data.base import default_num_workers
from dim_lightning.data.cifar10 import CIFAR10DataModule
from dim_lightning.errors import DIMError
from dim_lightning.train import main as train_main
from tests.conftest import FAST, SMALL_CRITIC, run_cli
from tests.datasets import python2_batch_pickle, write_cifar10

NOISE = ("litlogger", "LeafSpec", "worker processes", "does not have many workers", "`weights_only` was not set")


def _raw_test_images(root) -> np.ndarray:
    """The official test split (test_batch) as stored: served whole, in file order, as the `test` split."""
    batch = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes())
    return batch[b"data"].reshape(-1, 3, 32, 32)


@pytest.mark.parametrize("size", [64, 16])
def test_cifar10_is_resized_to_data_image_size(tmp_path, size: int) -> None:
    root = write_cifar10(tmp_path / "cifar")
    datamodule = CIFAR10DataModule(root=str(root), image_size=size, batch_size=8)
    datamodule.setup()
    images = datamodule.test_set.all_images()[0]
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, size, size)
    for split in (datamodule.train_set, datamodule.val_set):
        assert split.all_images()[0].shape[1:] == (3, size, size)
    original = torch.from_numpy(_raw_test_images(root)).float()
    reference = F.interpolate(original, size=size, mode="bilinear", antialias=True, align_corners=False)
    assert (images.float() - reference).abs().max() <= 1.0  # bilinear, antialiased; uint8 rounding only
    # the same pictures in the same order: each image's colour (what its class sets) is kept
    assert torch.allclose(images.float().mean((2, 3)), original.mean((2, 3)), atol=2.0)


def test_cifar10_at_its_native_size_is_the_files_pixels(tmp_path) -> None:
    root = write_cifar10(tmp_path / "cifar")
    datamodule = CIFAR10DataModule(root=str(root), batch_size=8)
    datamodule.setup()
    assert np.array_equal(datamodule.test_set.all_images()[0].numpy(), _raw_test_images(root))


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar10_batches_in_each_pickle_protocol_load_and_a_doctored_one_runs_nothing(tmp_path) -> None:
    root = write_cifar10(tmp_path / "cifar")
    folder = root / "cifar-10-batches-py"
    for protocol in (2, 5):  # 2: as the published files (Python 2 era); 5: numpy's out-of-band buffers
        batch = pickle.loads((folder / "data_batch_1").read_bytes())
        (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
        datamodule = CIFAR10DataModule(root=str(root), batch_size=8)
        datamodule.setup()
        assert len(datamodule.train_set) + len(datamodule.val_set) == 100  # val: the selection split carved from train
    marker = tmp_path / "MARKER"
    batch[b"data"] = RunsCommand(f"touch {marker}")
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(DIMError, match=r"data_batch_2 is not a CIFAR-10 batch file \(it asks for posix.system"):
        CIFAR10DataModule(root=str(root), batch_size=8).setup()
    assert not marker.exists()


def test_a_batch_file_as_published_by_python_2_loads(tmp_path) -> None:
    root = write_cifar10(tmp_path / "cifar")
    data = np.random.default_rng(0).integers(0, 256, (20, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(20)]
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(python2_batch_pickle(data, labels))
    datamodule = CIFAR10DataModule(root=str(root), batch_size=8)
    datamodule.setup()
    images, test_labels = datamodule.test_set.all_images()
    assert np.array_equal(images.numpy(), data.reshape(-1, 3, 32, 32)) and test_labels.tolist() == labels


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _long(value: int) -> bytes:
    size = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + value.to_bytes(size, "little")


def _short_bytes(value: bytes) -> bytes:
    return b"C" + bytes([len(value)]) + value


def _reconstruct(shape: int, dtype: bytes) -> bytes:
    """numpy's `_reconstruct(ndarray, (shape,), dtype)`: allocates the whole array before any data is read."""
    return (
        _global("numpy.core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + _long(shape)
        + b"\x85"
        + (_short_bytes(dtype) + b"\x87R")
    )


# Each a whole batch file of a few bytes (or MB) that made the old reader allocate hundreds of MB (scaled down from
# the GBs an attacker would ask for, so that the old code fails this test without exhausting the machine).
HOSTILE_BATCHES = {
    "huge _reconstruct shape": b"\x80\x03}" + _short_bytes(b"data") + _reconstruct(300_000_000, b"b") + b"s.",
    "huge object array": b"\x80\x03}" + _short_bytes(b"data") + _reconstruct(40_000_000, b"O") + b"s.",
    "scalar of a huge dtype": _global("numpy.core.multiarray", "scalar")
    + _global("numpy", "dtype")
    + _short_bytes(b"V300000000")
    + b"\x85R\x85R.",
    "memo slot far away": b"\x80\x02}r" + (40_000_000).to_bytes(4, "little") + b".",
    "declared length it lacks": b"\x80\x04\x8e" + (300_000_000).to_bytes(8, "little") + b"abc.",
    "millions of opcodes": b"\x80\x02(" + b"}" * 4_000_000 + b"l.",
}


@pytest.mark.parametrize("payload", HOSTILE_BATCHES.values(), ids=HOSTILE_BATCHES.keys())
def test_a_doctored_batch_costs_what_its_bytes_do_and_is_one_clear_error(tmp_path, payload: bytes) -> None:
    root = write_cifar10(tmp_path / "cifar")
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(payload)
    tracemalloc.start()
    try:
        with pytest.raises(DIMError, match=r"data_batch_3 is not a CIFAR-10 batch file.*download cifar-10-python"):
            CIFAR10DataModule(root=str(root), batch_size=8).setup()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB"


def _batch(tmp_path, name: str, batch) -> None:
    root = tmp_path / "cifar"
    if not root.exists():
        write_cifar10(root)
    (root / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(batch))


def _images(count: int, width: int = 3072, dtype=np.uint8) -> np.ndarray:
    return np.zeros((count, width), dtype=dtype)


MALFORMED = [
    ("data_batch_1", [1, 2], "holds a list, not a dict with b'data' and b'labels'"),
    ("data_batch_1", {b"data": _images(4, dtype=np.float32), b"labels": [0] * 4}, "data are a float32 array"),
    ("data_batch_1", {b"data": _images(4, 3000), b"labels": [0] * 4}, "not uint8 rows of 3072 pixels"),
    ("data_batch_1", {b"data": _images(10_001), b"labels": [0] * 10_001}, "holds 10001 images, not 1 to 10000"),
    ("data_batch_2", {b"data": _images(4), b"labels": [0] * 3}, "labels are not 4 ints in 0..9"),
    ("test_batch", {b"data": _images(4), b"labels": [0, 1, 2, 10]}, "labels are not 4 ints in 0..9"),
    ("test_batch", {b"data": _images(2), b"labels": [-1, 1]}, "labels are not 2 ints"),
    ("test_batch", {b"data": _images(2), b"labels": [2**70, 1]}, "labels are not 2 ints"),
    ("test_batch", {b"data": _images(2), b"labels": "ab"}, "labels are not 2 ints"),
    ("batches.meta", {b"label_names": [b"cat"] * 9}, "no b'label_names' list of 10 names"),
    ("batches.meta", [b"cat"] * 10, "no b'label_names' list of 10 names"),
]


@pytest.mark.parametrize(("name", "batch", "message"), MALFORMED)
def test_a_batch_file_not_in_the_documented_format_is_one_clear_error(tmp_path, name: str, batch, message) -> None:
    _batch(tmp_path, name, batch)
    with pytest.raises(DIMError, match=f"{name} is not .*{re.escape(message)}.*download cifar-10-python"):
        CIFAR10DataModule(root=str(tmp_path / "cifar"), batch_size=8).setup()


def test_a_batch_file_far_larger_than_a_real_one_is_not_read(tmp_path) -> None:
    batch = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_4"
    _batch(tmp_path, batch.name, {b"data": _images(4), b"labels": [0] * 4})
    with batch.open("ab") as file:  # a valid pickle, then a sparse tail: a 60 MB file that takes no disk
        file.truncate(60 * 2**20)
    with pytest.raises(DIMError, match=r"data_batch_4 is 62914560 bytes, more than the 50331648 such a file needs"):
        CIFAR10DataModule(root=str(tmp_path / "cifar"), batch_size=8).setup()


def test_a_bad_batches_meta_exits_2_through_train_py(tmp_path, main_in_process) -> None:
    _batch(tmp_path, "batches.meta", [b"cat"] * 10)
    code, output = main_in_process(train_main, "data=cifar10", f"data.root={tmp_path / 'cifar'}", "logger=none")
    assert code == 2, output[-2000:]
    assert "batches.meta is not CIFAR-10's batches.meta" in output and "Traceback" not in output


def test_default_workers_never_exceed_the_cores() -> None:
    assert 1 <= default_num_workers() <= min(4, len(os.sched_getaffinity(0)))


@pytest.mark.slow
def test_a_run_on_cifar10_at_64px_logs_no_known_noise(tmp_path) -> None:
    root = write_cifar10(tmp_path / "cifar")
    result = run_cli(
        *FAST,
        SMALL_CRITIC["dot"],
        "data=cifar10",
        f"data.root={root}",
        "data.image_size=64",
        "data.batch_size=8",
        "model.z_dim=16",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "eval.final=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Trainer.fit` stopped" in log  # the log has Lightning's lines, just not the noise
    for noise in NOISE:
        assert noise not in log and noise not in result.stderr, noise
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["run_config"]["data"]["image_size"] == 64
