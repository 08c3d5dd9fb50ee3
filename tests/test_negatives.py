"""Negatives strategies: the blog's shuffled pairs never pair an image with itself (unless asked to)."""

from __future__ import annotations

import math

import pytest
import torch

from dim_lightning.mi.bounds import jsd
from dim_lightning.mi.negatives import derangement, shuffled_pairs


class GaussianRatioCritic:
    """Scores (x_i, y_j) with the exact log density ratio of a unit Gaussian pair with correlation rho."""

    def __init__(self, rho: float) -> None:
        self.rho = rho

    def score_aligned(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y, r = a[:, None, 0], b[..., 0], self.rho
        return -0.5 * math.log(1 - r * r) - (r * r * (x * x + y * y) - 2 * r * x * y) / (2 * (1 - r * r))


@pytest.mark.parametrize("n", [2, 3, 7, 100])
def test_derangement_never_pairs_an_image_with_itself(n: int) -> None:
    torch.manual_seed(0)
    for _ in range(200):
        partner = derangement(n)
        assert sorted(partner.tolist()) == list(range(n))  # a permutation
        assert not (partner == torch.arange(n)).any()


def test_shuffled_negatives_read_the_true_mi_with_the_exact_critic() -> None:
    # A 4-nat Gaussian pair, batch 100 as in the blog. With a plain shuffle about one real pair per batch is
    # scored as a negative and the JSD read-out collapses (the review measured -1.66 nats).
    true_mi = 4.0
    rho = math.sqrt(1 - math.exp(-2 * true_mi))
    critic = GaussianRatioCritic(rho)
    torch.manual_seed(0)
    estimates = {True: [], False: []}
    for _ in range(50):
        x = torch.randn(100, 1, dtype=torch.float64)
        y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(100, 1, dtype=torch.float64)
        for allow_self in estimates:
            scores = shuffled_pairs(critic, x, y[:, None, :], allow_self=allow_self)
            estimates[allow_self].append(jsd(scores).mi.item())
    deranged = sum(estimates[False]) / 50
    assert deranged == pytest.approx(true_mi, rel=0.1)
    assert min(estimates[False]) > 1.0  # no batch collapses
    assert sum(estimates[True]) / 50 < deranged - 0.5 and min(estimates[True]) < 0.0


def test_all_pairs_negatives_are_every_other_image_without_a_host_sync() -> None:
    from dim_lightning.mi.negatives import all_pairs, other_images
    from tests.host_sync import HostSyncCounter

    class Sum:
        def score_all(self, a, b):
            return a[:, None, None, 0] + b[None, :, :, 0]

    torch.manual_seed(0)
    a, b_local = torch.randn(4, 1), torch.randn(4, 3, 1)
    b_all = torch.cat([torch.randn(4, 3, 1), b_local])  # rank 1 of 2: this rank's images start at 4
    with HostSyncCounter() as syncs:
        scores = all_pairs(Sum(), a, b_local, gather=lambda t: (b_all, 4))
    assert syncs.total == 0
    full = Sum().score_all(a, b_all)  # [4, 8, 3]
    for i in range(4):
        own = 4 + i
        expected = torch.cat([full[i, k] for k in range(8) if k != own])
        assert sorted(scores.negative[i].tolist()) == sorted(expected.tolist())
        torch.testing.assert_close(scores.positive[i], full[i, own])
    assert other_images(3, 3, 0).tolist() == [[1, 2], [2, 0], [0, 1]]
    with HostSyncCounter() as syncs:  # the counter does see what a boolean mask costs
        full[torch.ones(4, 8, dtype=torch.bool)]
    assert syncs.total == 1
