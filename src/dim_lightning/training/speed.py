"""The fast path's model side, applied by `DIMModule.configure_model` (so the eager benchmark baseline and
offline evaluation keep the plain model): channels_last memory format for the encoder and its inputs, and
`torch.compile` of the encoder and the critics' networks. Both change speed, never results beyond float
rounding, and keep parameter names (in-place `nn.Module.compile`), so checkpoints stay interchangeable."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dim_lightning.training.compile_cache import use_persistent_compile_cache


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    images = args[0]
    if isinstance(images, Tensor) and images.dim() == 4:
        return (images.contiguous(memory_format=torch.channels_last), *args[1:])
    return args


@dataclass
class Speedups:
    """`channels_last`: encoder weights and input images in NHWC (faster convolutions on GPUs with tensor
    cores, and with oneDNN on CPU). `compile`: wrap the encoder and every critic network with `torch.compile`
    (`compile_mode`: None for the default, "reduce-overhead" for CUDA graphs, "max-autotune"), unless the whole
    step is compiled. `matmul_precision`: float32 matmul precision on CUDA (None: torch's default)."""

    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    matmul_precision: str | None = None

    def set_matmul_precision(self, device: torch.device) -> None:
        """`torch.set_float32_matmul_precision` (process-wide) when training on CUDA: "high" lets float32
        matmuls use TF32 tensor cores (the paper's 2048-unit critic in full fp32 is several times slower)."""
        if self.matmul_precision is not None and device.type == "cuda":
            torch.set_float32_matmul_precision(self.matmul_precision)

    def apply(self, encoder: nn.Module, critics: list[nn.Module], whole_step: bool = False) -> None:
        """In place; with `whole_step` the step is compiled as a whole (`training.whole_step`), not per part."""
        if getattr(encoder, "_speedups_applied", False):  # configure_model runs again on every fit
            return
        if self.channels_last:
            encoder.to(memory_format=torch.channels_last)
            encoder.register_forward_pre_hook(_channels_last_input)
        if self.compile and not whole_step:
            use_persistent_compile_cache()
            encoder.compile(mode=self.compile_mode)
            for critic in critics:
                for network in critic.children():
                    network.compile(mode=self.compile_mode)
        encoder._speedups_applied = True
