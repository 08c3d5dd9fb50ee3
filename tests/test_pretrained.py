"""load_encoder: a trained checkpoint as a frozen encoder for other programs; its codes equal the evaluation's,
its inputs are checked against the shape it was trained on, and it reads the checkpoint as data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dim_lightning import load_encoder
from dim_lightning.data.transforms import to_signed_unit
from dim_lightning.errors import DIMError
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC


@pytest.fixture
def checkpoint(make_config, tmp_path):
    cfg = make_config(
        *FAST, SMALL_CRITIC["dot"], "trainer.max_epochs=1", "++trainer.limit_train_batches=2", "eval.final=false"
    )
    result = train(cfg)
    return tmp_path / "checkpoints" / "last.ckpt", result.trainer


def test_codes_equal_the_trained_encoders_on_uint8_and_float_images(checkpoint) -> None:
    path, trainer = checkpoint
    encoder = load_encoder(path, device="cpu")
    assert (encoder.channels, encoder.image_size) == (1, 32)  # digits: grey, upscaled to 32 px
    datamodule = trainer.datamodule
    datamodule.setup("validate")
    images, _ = datamodule.val_set.all_images()  # uint8 [N, 1, 32, 32]
    trained = trainer.lightning_module.encoder.eval()
    with torch.no_grad():
        expected = trained(to_signed_unit(images[:50])).Y
    codes = encoder.encode(images[:50, 0].numpy(), batch_size=16)  # (N, H, W) uint8, in 4 batches
    assert codes.shape == (50, trained.head.mean.out_features)
    torch.testing.assert_close(codes, expected, rtol=1e-5, atol=1e-5)
    floats = encoder.encode(images[:50].float() / 255)  # (N, C, H, W) float in [0, 1]
    torch.testing.assert_close(floats, expected, rtol=1e-4, atol=1e-4)
    assert encoder.features(images[:5, 0].numpy(), place="fc").shape[0] == 5
    assert not any(p.requires_grad for p in encoder.encoder.parameters())


WRONG_IMAGES = [
    (np.zeros((4, 32, 32, 3), np.uint8), "1-channel 32x32"),
    (np.zeros((4, 64, 64), np.uint8), "resized to 32x32"),
    (np.zeros((4, 32, 32), np.float64), "uint8"),
    (torch.full((4, 1, 32, 32), 200.0), "in \\[0, 1\\]"),
    (np.zeros((32, 32), np.uint8), "got an array of shape \\(32, 32\\)"),
]


def test_wrong_images_name_what_the_encoder_expects(checkpoint) -> None:
    encoder = load_encoder(checkpoint[0], device="cpu")
    for images, message in WRONG_IMAGES:
        with pytest.raises(DIMError, match=message):
            encoder.encode(images)
    with pytest.raises(DIMError, match="unknown feature place"):
        encoder.features(np.zeros((1, 32, 32), np.uint8), place="pixels")


def test_a_hostile_checkpoint_is_refused_without_running_code(tmp_path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": {}}, "payload": Payload()}, path)
    with pytest.raises(DIMError, match="trust_checkpoint"):
        load_encoder(path)
    assert not marker.exists()
