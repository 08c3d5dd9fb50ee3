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


def other_images(n: int, k: int, offset: int, device: torch.device | str = "cpu") -> Tensor:
    """[n, k - 1] indices of the other images of a gathered batch of k: row i lists every image but its own
    (`i + offset`), cyclically from the next one. A static index (shape fixed by n and k) instead of a boolean
    mask: a mask's selection needs the host to count its True entries (a device sync per step) and breaks a
    whole-step `torch.compile`; a gather by this index does neither."""
    steps = torch.arange(1, k, device=device)
    return (torch.arange(n, device=device)[:, None] + offset + steps) % k


def all_pairs(critic, a: Tensor, b: Tensor, gather: Gather = single_device) -> Scores:
    """Official DIM: negatives of anchor i are all locations of every other image (on every device)."""
    require(a.shape[0] >= 2, "an MI term with all-pairs negatives needs a batch of at least 2 images")
    b_all, offset = gather(b)
    scores = critic.score_all(a, b_all)  # [N, K, M]
    n, k, m = scores.shape
    rows = torch.arange(n, device=scores.device)
    positive = scores[rows, rows + offset]  # [N, M]
    others = other_images(n, k, offset, scores.device)  # [N, K - 1]
    negative = scores.gather(1, others[:, :, None].expand(n, k - 1, m)).reshape(n, (k - 1) * m)
    return Scores(positive=positive, negative=negative)


def derangement(n: int, device: torch.device | str = "cpu") -> Tensor:
    """A random permutation with no fixed point: image i is paired with `partner[i] != i`.

    A random order of the batch, each image paired with the one `shift` places further along (cyclically),
    `shift` drawn from 1..n-1. `randperm` alone leaves about one image per batch paired with itself. All on the
    device, with no value read on the host (a whole-step compile traces it as one graph)."""
    require(n >= 2, "shuffled negatives need a batch of at least 2 images")
    order = torch.randperm(n, device=device)
    shift = torch.randint(1, n, (), device=device)
    position = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=device))  # order[position[i]] == i
    return order[(position + shift) % n]


def shuffled_pairs(critic, a: Tensor, b: Tensor, gather: Gather = single_device, allow_self: bool = False) -> Scores:
    """The blog recipe's: each anchor's negatives are the features of one other image of the local batch.

    The partner is drawn by a derangement, so a negative is never the anchor's own image. The blog shuffles
    with a plain permutation (`allow_self=True`, for exact reproduction): about one real pair per batch is
    then scored as a negative, which caps the JSD critic's log-ratio and the logged MI near log(batch)."""
    del gather  # local batch only, as in the blog recipe
    partner = torch.randperm(b.shape[0], device=b.device) if allow_self else derangement(b.shape[0], b.device)
    positive = critic.score_aligned(a, b)
    negative = critic.score_aligned(a, b[partner])
    return Scores(positive=positive, negative=negative)
