"""Prior matching on the code. `KLPrior`: the seed's VAE-style KL to N(0, I), averaged over batch and
dimensions exactly as the Keras code (`-0.5 * K.mean(1 + log_var - mean^2 - exp(log_var))`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.models.encoders import EncoderOutput


class KLPrior(nn.Module):
    def forward(self, out: EncoderOutput) -> Tensor:
        require(
            out.log_var is not None,
            "prior=kl needs a Gaussian code (mean and log-variance), but the encoder's head is "
            "deterministic; set encoder.stochastic=true, or use prior=none",
        )
        return -0.5 * torch.mean(1 + out.log_var - out.mean.square() - out.log_var.exp())
