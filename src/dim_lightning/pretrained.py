"""A trained encoder for other programs: `load_encoder(checkpoint)` returns a frozen encoder that knows the
image shape and scaling it was trained with, takes images as people hold them (uint8 arrays, float tensors)
and returns codes or the other feature places. Checkpoints are read as data (see `dim_lightning.run.untrusted`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dim_lightning.config.builders import build_encoder, buildable_targets
from dim_lightning.config.saved import build_within, input_channels, saved_run_config
from dim_lightning.data.transforms import to_signed_unit
from dim_lightning.errors import require
from dim_lightning.eval.features import PLACES
from dim_lightning.run.checkpoints import read_checkpoint

ENCODER_PREFIX = "encoder."


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class FrozenEncoder:
    """A trained DIM encoder in eval mode with its input contract: `channels` x `image_size` x `image_size`
    images scaled as in training (uint8 0..255 -> -1..1)."""

    def __init__(self, encoder: nn.Module, channels: int, image_size: int, device: torch.device) -> None:
        self.encoder = encoder.eval().requires_grad_(False).to(device)
        self.channels = channels
        self.image_size = image_size
        self.device = device

    def _as_uint8_batch(self, images: np.ndarray | Tensor) -> Tensor:
        """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) uint8 tensor."""
        batch = torch.as_tensor(np.asarray(images))
        if batch.dim() == 3:
            batch = batch[:, None]
        else:
            require(batch.dim() == 4, lambda: self._shape_error(tuple(images.shape)))
            batch = batch.permute(0, 3, 1, 2)
        return batch

    def _shape_error(self, shape: tuple[int, ...]) -> str:
        layouts = "uint8 (N, H, W)" if self.channels == 1 else f"uint8 (N, H, W, {self.channels})"
        return (
            f"this encoder takes {self.channels}-channel {self.image_size}x{self.image_size} images, got an array "
            f"of shape {shape}; pass {layouts} arrays or float tensors (N, {self.channels}, {self.image_size}, "
            f"{self.image_size}) in [0, 1], resized to {self.image_size}x{self.image_size}"
        )

    def prepare(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 arrays (N, H, W) / (N, H, W, C) as uint8 (N, C, H, W), or float tensors (N, C, H, W) in [0, 1]
        as they are; checked against the encoder's channels and size."""
        if isinstance(images, Tensor) and images.is_floating_point():
            require(images.dim() == 4, lambda: self._shape_error(tuple(images.shape)))
            low, high = images.min().item(), images.max().item()
            require(
                low >= -1e-6 and high <= 1 + 1e-6,
                f"float images are taken in [0, 1] (as torchvision's ToTensor gives), got values in [{low:.3g}, "
                f"{high:.3g}]; divide 0..255 values by 255, or pass uint8 arrays",
            )
            batch = images.detach()
        else:
            dtype = np.asarray(images).dtype
            require(dtype == np.uint8, f"images must be uint8 arrays (0..255) or float tensors in [0, 1], got {dtype}")
            batch = self._as_uint8_batch(images)
        expected = (self.channels, self.image_size, self.image_size)
        require(tuple(batch.shape[1:]) == expected, lambda: self._shape_error(tuple(images.shape)))
        return batch

    def _scaled(self, chunk: Tensor) -> Tensor:
        """The training scaling, -1..1 (uint8 / 127.5 - 1; floats in [0, 1] * 2 - 1)."""
        chunk = chunk.to(self.device)
        return chunk.float() * 2 - 1 if chunk.is_floating_point() else to_signed_unit(chunk)

    @torch.no_grad()
    def features(self, images: np.ndarray | Tensor, place: str = "Y", batch_size: int = 256) -> Tensor:
        """Features at `place` ("Y": the code, "fc": the layer before it, "conv": the last conv map, flattened)
        as a float32 CPU tensor [N, D], computed in batches of `batch_size` on the encoder's device."""
        require(place in PLACES, f"unknown feature place {place!r}; choose one of {', '.join(PLACES)}")
        chunks = self.prepare(images).split(batch_size)
        return torch.cat([PLACES[place](self.encoder(self._scaled(chunk))).float().cpu() for chunk in chunks])

    def encode(self, images: np.ndarray | Tensor, batch_size: int = 256) -> Tensor:
        """The codes (Y, the representation DIM learns) of the images: float32 [N, z_dim] on the CPU."""
        return self.features(images, "Y", batch_size)


def load_encoder(
    checkpoint: str | Path, device: str | torch.device | None = None, trust_checkpoint: bool = False
) -> FrozenEncoder:
    """The encoder of a checkpoint written by `train.py` (e.g. run/checkpoints/last.ckpt), frozen, on `device`
    (default: CUDA, else MPS, else CPU). `trust_checkpoint=True` allows a file that needs arbitrary unpickling
    (it may run code: only for files you trust)."""
    where = f"checkpoint={checkpoint}"
    saved = read_checkpoint(checkpoint, "checkpoint", trust=trust_checkpoint, allowed_targets=buildable_targets())
    cfg = saved_run_config(saved, where, trust_checkpoint)
    channels, image_size = input_channels(saved["state_dict"]), int(cfg.data.image_size)
    weights = {
        k.removeprefix(ENCODER_PREFIX): v for k, v in saved["state_dict"].items() if k.startswith(ENCODER_PREFIX)
    }
    encoder = build_within(lambda: build_encoder(cfg, channels, image_size), weights, where)
    return FrozenEncoder(encoder, channels, image_size, torch.device(device) if device else best_device())
