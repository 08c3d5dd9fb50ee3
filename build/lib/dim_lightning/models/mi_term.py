"""One MI objective of DIM: a view of the encoder output, a critic, a negatives strategy and a bound."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from dim_lightning.mi.bounds import Bound, Scores
from dim_lightning.mi.negatives import Gather, single_device
from dim_lightning.models.critics import at_least_float32
from dim_lightning.models.encoders import EncoderOutput


class MITerm(nn.Module):
    def __init__(
        self,
        view: Callable[[EncoderOutput], Tensor],
        critic: nn.Module,
        negatives: Callable[..., Scores],
        bound: Callable[[Scores], Bound],
    ) -> None:
        super().__init__()
        self.view = view
        self.critic = critic
        self.negatives = negatives
        self.bound = bound

    def forward(self, out: EncoderOutput, gather: Gather = single_device) -> Bound:
        a = self.critic.embed_code(out.code)
        b = self.critic.embed_features(self.view(out))
        scores = self.negatives(self.critic, a, b, gather)
        # Under bf16 autocast a critic may return bf16 scores; the bound (log-sum-exps, means) runs in float32.
        return self.bound(Scores(at_least_float32(scores.positive), at_least_float32(scores.negative)))
