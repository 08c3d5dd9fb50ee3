"""The batched data path: one index operation per batch, a seeded permutation per epoch that Lightning's
`set_epoch` really reaches, deterministic evaluation loaders."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from dim_lightning.data import on_device
from dim_lightning.data.base import ImageArrayDataset
from dim_lightning.data.batches import EpochPermutationSampler
from dim_lightning.data.synthetic import SyntheticDataModule
from dim_lightning.errors import DIMError
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC


def _datamodule(**kwargs) -> SyntheticDataModule:
    # 78 training images: 70 train + 8 carved as the selection split (val_fraction 0.1); 20 test
    options = {"num_train": 78, "num_val": 20, "image_size": 8, "channels": 1, "batch_size": 16, **kwargs}
    datamodule = SyntheticDataModule(**options)
    datamodule.setup()
    # Label every image with its index, so a batch's labels say which images it holds.
    datamodule.train_set.labels = torch.arange(len(datamodule.train_set))
    datamodule.val_set.labels = torch.arange(len(datamodule.val_set))
    datamodule.test_set.labels = torch.arange(len(datamodule.test_set))
    return datamodule


def test_a_batch_is_one_index_operation_not_one_getitem_per_image(monkeypatch) -> None:
    calls = {"item": 0, "items": 0}
    getitems = ImageArrayDataset.__getitems__

    def count_item(self, index):
        calls["item"] += 1

    def count_items(self, indices):
        calls["items"] += 1
        return getitems(self, indices)

    monkeypatch.setattr(ImageArrayDataset, "__getitem__", count_item)
    monkeypatch.setattr(ImageArrayDataset, "__getitems__", count_items)
    datamodule = _datamodule()
    batches = list(datamodule.train_dataloader())
    assert calls == {"item": 0, "items": 4} and len(batches) == 4  # 70 // 16, the remainder dropped
    images, labels = batches[0]
    assert images.shape == (16, 1, 8, 8) and images.dtype == torch.uint8
    assert torch.equal(images, torch.as_tensor(datamodule.train_set.images[labels.numpy()]))


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    def epoch_labels(seed: int, epoch: int) -> list[int]:
        loader = _datamodule(shuffle_seed=seed).train_dataloader()
        loader.batch_sampler.sampler.set_epoch(epoch)
        return torch.cat([labels for _, labels in loader]).tolist()

    first = epoch_labels(seed=3, epoch=0)
    assert len(first) == 64 and len(set(first)) == 64  # each image at most once per epoch
    assert first == epoch_labels(seed=3, epoch=0)
    assert first != epoch_labels(seed=3, epoch=1)
    assert first != epoch_labels(seed=4, epoch=0)
    assert first != sorted(first)


class _Recorder(pl.LightningModule):
    """Records the labels of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.seen.setdefault(self.current_epoch, []).extend(labels.tolist())
        return self.layer(images.float().mean((1, 2, 3))[:, None]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_sets_the_epoch_on_our_sampler() -> None:
    datamodule = _datamodule(shuffle_seed=7)
    recorder = _Recorder()
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(recorder, train_dataloaders=datamodule.train_dataloader())
    sampler = EpochPermutationSampler(70, seed=7)
    for epoch in range(3):
        assert recorder.seen[epoch] == sampler.order(epoch)[:64].tolist()
    assert recorder.seen[0] != recorder.seen[1] != recorder.seen[2]


def test_evaluation_loaders_keep_every_image_in_order() -> None:
    datamodule = _datamodule()
    loaders = {
        8: datamodule.val_dataloader(),
        20: datamodule.test_dataloader(),
        70: datamodule.eval_loader("train"),
    }
    for size, loader in loaders.items():
        labels = torch.cat([labels for _, labels in loader]).tolist()
        assert labels == list(range(size))


class _ImageRecorder(_Recorder):
    """Also records every training batch's images as the step sees them (scaled and augmented)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.images.append(batch[0].clone())
        return super().training_step(batch, batch_idx)


def _fit_and_record(datamodule: SyntheticDataModule, epochs: int = 2) -> _ImageRecorder:
    recorder = _ImageRecorder()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(recorder, datamodule=datamodule)
    return recorder


def test_on_device_serves_the_same_batches_as_the_loader() -> None:
    options = {"shuffle_seed": 5, "crop_padding": 2, "flip": True}
    streamed = _fit_and_record(_datamodule(**options))
    torch.manual_seed(123)  # other draws from the global RNG must not change the batches
    resident_module = _datamodule(on_device=True, **options)
    resident = _fit_and_record(resident_module)
    assert not isinstance(resident_module.train_dataloader(), torch.utils.data.DataLoader)
    assert resident.seen == streamed.seen and streamed.seen[0] != streamed.seen[1]
    assert len(resident.images) == len(streamed.images) == 8
    for ours, theirs in zip(resident.images, streamed.images, strict=True):
        assert torch.equal(ours, theirs)
    unaugmented = _datamodule(shuffle_seed=5).train_set.images[streamed.seen[0][:16]]
    assert not torch.equal(streamed.images[0], torch.as_tensor(unaugmented).float() / 127.5 - 1)  # augmented


def test_on_device_refuses_a_split_larger_than_free_accelerator_memory(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 2000))
    with pytest.raises(DIMError, match=r"data\.on_device=false"):
        on_device.to_resident(torch.zeros(10_000, dtype=torch.uint8), torch.device("cuda"))


def test_train_py_runs_with_the_split_on_the_device(make_config) -> None:
    cfg = make_config(*FAST, SMALL_CRITIC["dot"], "data.on_device=true", "debug=fast", "eval.final=false")
    trainer = train(cfg).trainer
    assert trainer.global_step == 1 and isinstance(trainer.train_dataloader, on_device.DeviceBatches)
