"""Critics T(code, feature) -> score, split into two embeddings and a cheap pairing so that every code can be
scored against every feature of the batch (all-pairs negatives) without re-running networks: `embed_code`
([N, D] -> [N, H]), `embed_features` ([N, M, C] -> [N, M, H]), `score_all(a, b)` ([N, H] x [K, M, H] ->
[N, K, M]) and `score_aligned(a, b)` ([N, H] x [N, M, H] -> [N, M]). `ConcatCritic` is the blog recipe's
discriminator, `DotCritic` the official DIM "encode-and-dot" critic."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dim_lightning.models.encoders import keras_init


def at_least_float32(x: Tensor) -> Tensor:
    """`x` in float32, unless it is already float32 or wider (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class ConcatCritic(nn.Module):
    """The blog recipe's discriminator: an MLP on concat[code, feature] (ReLU layers, a linear output whose
    sigmoid is the Keras output; that layer runs in float32 under autocast). The first layer of an MLP on a
    concatenation is a sum of two projections, which is what lets it score all pairs; they are initialised as
    the one Keras Dense layer they split (Glorot-uniform over fan-in code_dim + feature_dim)."""

    def __init__(self, code_dim: int, feature_dim: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.code_proj = nn.Linear(code_dim, hidden)
        self.feature_proj = nn.Linear(feature_dim, hidden, bias=False)
        rest: list[nn.Module] = []
        for _ in range(layers - 1):
            rest += [nn.ReLU(), nn.Linear(hidden, hidden)]
        self.head = nn.Sequential(*rest, nn.ReLU(), nn.Linear(hidden, 1))
        self.apply(keras_init)
        limit = math.sqrt(6.0 / (code_dim + feature_dim + hidden))  # Glorot-uniform of the joint Dense layer
        for projection in (self.code_proj, self.feature_proj):
            nn.init.uniform_(projection.weight, -limit, limit)

    def embed_code(self, code: Tensor) -> Tensor:
        return self.code_proj(code)

    def embed_features(self, features: Tensor) -> Tensor:
        return self.feature_proj(features)

    def _score(self, joint: Tensor) -> Tensor:
        """The head on summed projections; its last layer (the logit) in float32 even under autocast, where a
        bf16 logit is rounded by ~0.06 at |T| ~ 16 (and NWJ's exp amplifies that)."""
        hidden = self.head[:-1](joint)
        with torch.autocast(joint.device.type, enabled=False):
            return self.head[-1](at_least_float32(hidden)).squeeze(-1)

    def score_all(self, a: Tensor, b: Tensor) -> Tensor:
        return self._score(a[:, None, None, :] + b[None])

    def score_aligned(self, a: Tensor, b: Tensor) -> Tensor:
        return self._score(a[:, None, :] + b)


class ResidualEmbedding(nn.Module):
    """Official DIM's `MI1x1ConvNet` on channel-last inputs [..., C] -> [..., units]:
    LayerNorm(Linear-BN-ReLU-Linear(x) + shortcut(x)), the shortcut initialised close to the identity."""

    def __init__(self, in_features: int, units: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, units, bias=False)
        self.norm = nn.BatchNorm1d(units)
        self.out = nn.Linear(units, units)
        self.shortcut = nn.Linear(in_features, units, bias=False)
        self.layer_norm = nn.LayerNorm(units)
        if units >= in_features:
            with torch.no_grad():
                self.shortcut.weight.uniform_(-0.01, 0.01)
                self.shortcut.weight[:in_features, :in_features].fill_diagonal_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.hidden(x)
        h = self.norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)
        h = self.out(torch.relu(h))
        return self.layer_norm(h + self.shortcut(x))


class DotCritic(nn.Module):
    """The official DIM "encode-and-dot" critic: 1x1 MLP embeddings with a residual linear shortcut and LayerNorm
    on both sides, score = dot product. `temperature` divides the dot product; None means sqrt(units), which
    keeps initial scores O(1) (LayerNorm'd embeddings have norm ~sqrt(units)); 1.0 is the official code's raw
    dot product.

    Scores are computed in float32 even under bf16 autocast: raw dot products reach the hundreds, where bf16
    rounds in steps of 2 to 8, i.e. nats of error on every logit."""

    def __init__(self, code_dim: int, feature_dim: int, units: int = 512, temperature: float | None = None):
        super().__init__()
        self.code_net = ResidualEmbedding(code_dim, units)
        self.feature_net = ResidualEmbedding(feature_dim, units)
        self.scale = 1.0 / (temperature if temperature is not None else math.sqrt(units))

    def embed_code(self, code: Tensor) -> Tensor:
        return self.code_net(code) * self.scale

    def embed_features(self, features: Tensor) -> Tensor:
        return self.feature_net(features)

    def score_all(self, a: Tensor, b: Tensor) -> Tensor:
        with torch.autocast(a.device.type, enabled=False):
            return torch.einsum("nh,kmh->nkm", at_least_float32(a), at_least_float32(b))

    def score_aligned(self, a: Tensor, b: Tensor) -> Tensor:
        with torch.autocast(a.device.type, enabled=False):
            return torch.einsum("nh,nmh->nm", at_least_float32(a), at_least_float32(b))
