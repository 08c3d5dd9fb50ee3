"""What the code is paired with in an MI term. Each view maps an `EncoderOutput` to features [N, M, C]:
M "locations" of C channels, scored against the code.

- `local_features`: every location of the local map (DIM's local objective).
- `flat_features`: the whole local map as one vector (DIM's global objective).
- `code_itself`: the sampled code again (the blog recipe's global term pairs z with z, negatives with shuffled z).
"""

from __future__ import annotations

from torch import Tensor

from dim_lightning.models.encoders import EncoderOutput


def local_features(out: EncoderOutput) -> Tensor:
    return out.local.flatten(2).transpose(1, 2)


def flat_features(out: EncoderOutput) -> Tensor:
    return out.local.flatten(1).unsqueeze(1)


def code_itself(out: EncoderOutput) -> Tensor:
    return out.code.unsqueeze(1)
