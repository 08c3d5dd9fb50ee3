"""CIFAR-10 at data.image_size (resized, not silently 32 px), its batch files read without running code, and
a short command-line run on it whose train.log carries none of the known, non-actionable noise."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dim_lightning.data.base import default_num_workers
from dim_lightning.data.cifar10 import CIFAR10DataModule
from dim_lightning.errors import DIMError
from tests.conftest import FAST, SMALL_CRITIC, run_cli
from tests.datasets import write_cifar10

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
