"""Encoders: an image batch in, an `EncoderOutput` out (global code and its mean Y, local feature map, conv and fc
features).

- `BlogEncoder`: the blog's Keras encoder, layer for layer (4 conv/BN/LeakyReLU/max-pool blocks of width
  z_dim/8, /4, /2, z_dim; 2 more conv blocks; global max pool; dense mean and log-variance).
- `DCGAN32Encoder`: the paper's DCGAN-style encoder for 32x32 images (official `basic32x32`: three 4x4
  stride-2 convs of 64/128/256 channels, fc 1024, code); its local map is the 8x8x128 layer.
- `Alex64Encoder`: the paper's AlexNet-style encoder for 64x64 Tiny-ImageNet (official `alex64x64`: 3x3 convs
  of 96/192/384/384/192 channels with BN and ReLU, 3x3 stride-2 max pools after the 1st, 2nd and 5th, two fc
  layers of 4096, code); its local map is the 3rd conv (15x15x384 at 64x64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dim_lightning.errors import require


@dataclass
class EncoderOutput:
    """The outputs an encoder gives, named as the evaluation's feature places (`eval.suite.places`) are:
    code: what the MI objective sees (a sample if the head is stochastic); Y: the code's mean, the deterministic
    representation used for evaluation (the paper's "Y"; the Gaussian's mean for the prior); log_var: the
    Gaussian head's log-variance (None if deterministic); local: the local feature map [N, C, H, W] of the local
    MI objective; conv: the last conv feature map (the paper's "conv"); fc: the layer before the code, the output
    of the encoder's `fc` stage (the paper's "fc")."""

    code: Tensor
    Y: Tensor
    log_var: Tensor | None
    local: Tensor
    conv: Tensor
    fc: Tensor


class CodeHead(nn.Module):
    """Pooled features -> code. Stochastic: a VAE-style Gaussian with the reparameterisation trick."""

    def __init__(self, in_features: int, z_dim: int, stochastic: bool) -> None:
        super().__init__()
        self.mean = nn.Linear(in_features, z_dim)
        self.log_var = nn.Linear(in_features, z_dim) if stochastic else None

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        mean = self.mean(pooled)
        if self.log_var is None:
            return mean, mean, None
        log_var = self.log_var(pooled)
        code = mean + torch.exp(log_var / 2) * torch.randn_like(mean) if self.training else mean
        return code, mean, log_var


class StagedEncoder(nn.Module):
    """images -> local_blocks (the local map) -> conv (the last conv map) -> fc (pooled features) -> head.
    Subclasses build the four stages; the forward pass is shared."""

    local_blocks: nn.Module
    conv: nn.Module
    fc: nn.Module
    head: CodeHead

    def forward(self, images: Tensor) -> EncoderOutput:
        local = self.local_blocks(images)
        conv = self.conv(local)
        fc = self.fc(conv)
        code, mean, log_var = self.head(fc)
        return EncoderOutput(code=code, Y=mean, log_var=log_var, local=local, conv=conv, fc=fc)


class GlobalMaxPool(nn.Module):
    """[N, C, H, W] -> [N, C], Keras' GlobalMaxPooling2D."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.amax(x, dim=(2, 3))


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the Keras defaults the blog recipe was trained with."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _blog_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01),  # Keras BatchNormalization defaults
        nn.LeakyReLU(0.2),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class BlogEncoder(StagedEncoder):
    """The blog's encoder. Local map: after the 4th pooled block (image_size/16 per side, z_dim channels)."""

    def __init__(self, in_channels: int = 3, image_size: int = 64, z_dim: int = 256, stochastic: bool = True):
        super().__init__()
        require(
            z_dim % 8 == 0,
            f"the blog encoder needs model.z_dim divisible by 8 (its conv widths are z_dim/8, /4, /2), "
            f"got {z_dim}; use e.g. model.z_dim=64 or 256",
        )
        require(
            image_size % 16 == 0,
            f"the blog encoder halves the image 4 times, so data.image_size must be divisible by 16, "
            f"got {image_size}; use e.g. data.image_size=32 or 64",
        )
        widths = [z_dim // 8, z_dim // 4, z_dim // 2, z_dim]
        channels = [in_channels, *widths]
        self.local_blocks = nn.Sequential(*(_blog_block(channels[i], channels[i + 1], True) for i in range(4)))
        self.conv = nn.Sequential(_blog_block(z_dim, z_dim, False), _blog_block(z_dim, z_dim, False))
        self.fc = GlobalMaxPool()
        self.head = CodeHead(z_dim, z_dim, stochastic)
        self.apply(keras_init)


def _dcgan_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class DCGAN32Encoder(StagedEncoder):
    """The paper's DCGAN-style encoder for 32x32 inputs (any size divisible by 8 works)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, z_dim: int = 64, stochastic: bool = False):
        super().__init__()
        require(
            image_size % 8 == 0,
            f"the dcgan32 encoder halves the image 3 times, so data.image_size must be divisible by 8, "
            f"got {image_size}; use data.image_size=32",
        )
        self.local_blocks = nn.Sequential(_dcgan_block(in_channels, 64), _dcgan_block(64, 128))
        self.conv = _dcgan_block(128, 256)
        side = image_size // 8
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(256 * side * side, 1024, bias=False), nn.BatchNorm1d(1024), nn.ReLU()
        )
        self.head = CodeHead(1024, z_dim, stochastic)


def _alex_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
    return nn.Sequential(*layers)


class Alex64Encoder(StagedEncoder):
    """The paper's AlexNet-style encoder (any input size of at least 32 works; 64 is the paper's)."""

    def __init__(self, in_channels: int = 3, image_size: int = 64, z_dim: int = 64, stochastic: bool = False):
        super().__init__()
        require(
            image_size >= 32,
            f"the alex64 encoder pools 3 times by 3x3/2; data.image_size must be >= 32, got {image_size}",
        )
        self.local_blocks = nn.Sequential(
            _alex_block(in_channels, 96, pool=True), _alex_block(96, 192, pool=True), _alex_block(192, 384, pool=False)
        )
        self.conv = nn.Sequential(_alex_block(384, 384, pool=False), _alex_block(384, 192, pool=True))
        side = image_size
        for _ in range(3):
            side = (side - 3) // 2 + 1
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(192 * side * side, 4096, bias=False),
            nn.BatchNorm1d(4096),
            nn.ReLU(),
            nn.Linear(4096, 4096, bias=False),
            nn.BatchNorm1d(4096),
            nn.ReLU(),
        )
        self.head = CodeHead(4096, z_dim, stochastic)
