"""Prior matching on the code. `KLPrior`: the blog recipe's VAE-style KL to N(0, I), averaged over batch and
dimensions exactly as the Keras code (`-0.5 * K.mean(1 + log_var - mean^2 - exp(log_var))`).
`AdversarialPrior`: the paper's min-max matching of sigmoid(code) to a uniform prior."""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from dim_lightning.models.critics import at_least_float32
from dim_lightning.models.encoders import EncoderOutput


class KLPrior(nn.Module):
    def forward(self, out: EncoderOutput) -> Tensor:
        # float32 under autocast: a bf16 exp(log_var) and mean of 256 x batch terms would round the loss
        with torch.autocast(out.Y.device.type, enabled=False):
            mean, log_var = at_least_float32(out.Y), at_least_float32(out.log_var)
            return -0.5 * torch.mean(1 + log_var - mean.square() - log_var.exp())


class AdversarialPrior(nn.Module):
    """The paper's prior matching (Hjelm et al., 2019, sec. 3.3): a discriminator D tells samples of the
    prior V = Uniform[0, 1]^M from the encoder's squashed codes sigmoid(code), and the encoder is trained to
    fool it. D has its own Adam settings (`lr`, `betas`; a parameter group of the module's optimizer) and its own
    loss (`discriminator_loss`, on detached codes); the encoder's term (`forward`) is the non-saturating GAN
    loss -log D(sigmoid(code)).
    D is the paper's MLP with 1000 and 200 hidden units."""

    def __init__(
        self,
        code_dim: int,
        hidden: tuple[int, ...] = (1000, 200),
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        super().__init__()
        sizes = [code_dim, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.discriminator = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))
        self.lr = lr
        self.betas = tuple(betas)

    def forward(self, out: EncoderOutput) -> torch.Tensor:
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (torch.sigmoid(out.code),))
        return F.softplus(-logits).mean()

    def discriminator_loss(self, out: EncoderOutput) -> torch.Tensor:
        fake = torch.sigmoid(out.code.detach())
        real = torch.rand_like(fake)
        return F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake)).mean()

    def optimizer_group(self) -> dict:
        """The discriminator's parameter group: its own Adam settings inside the module's one optimizer."""
        return {
            "params": list(self.discriminator.parameters()),
            "lr": self.lr,
            "betas": self.betas,
            "weight_decay": 0.0,
        }
