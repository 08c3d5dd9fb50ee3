"""How negative pairs are drawn for an MI term: from every other image in the batch, or by shuffling.

A negatives strategy takes the critic, the embedded anchors `a` ([N, H]) and embedded features `b`
([N, M, H]: M locations per image) and returns `Scores`. `gather` collects `b` from every device (keeping the
gradient) and returns the gathered tensor and this device's offset in it; on one device it is the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dim_lightning.errors import require
from dim_lightning.mi.bounds import Scores

Gather = Callable[[Tensor], tuple[Tensor, int]]


def single_device(b: Tensor) -> tuple[Tensor, int]:
    """The `gather` of a single process: nothing to collect."""
    return b, 0


def all_pairs(critic, a: Tensor, b: Tensor, gather: Gather = single_device) -> Scores:
    """Official DIM: negatives of anchor i are all locations of every other image (on every device)."""
    require(a.shape[0] >= 2, "an MI term with all-pairs negatives needs a batch of at least 2 images")
    b_all, offset = gather(b)
    scores = critic.score_all(a, b_all)  # [N, K, M]
    n, k, m = scores.shape
    rows = torch.arange(n, device=scores.device)
    is_positive = torch.zeros(n, k, dtype=torch.bool, device=scores.device)
    is_positive[rows, rows + offset] = True
    positive = scores[rows, rows + offset]  # [N, M]
    negative = scores[~is_positive].reshape(n, (k - 1) * m)
    return Scores(positive=positive, negative=negative)


def shuffled_pairs(critic, a: Tensor, b: Tensor, gather: Gather = single_device) -> Scores:
    """The seed's recipe: each anchor's negatives are the features of one randomly shuffled image."""
    del gather  # local batch only, as in the seed
    permutation = torch.randperm(b.shape[0], device=b.device)
    positive = critic.score_aligned(a, b)
    negative = critic.score_aligned(a, b[permutation])
    return Scores(positive=positive, negative=negative)
