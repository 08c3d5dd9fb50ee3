"""Neural MI estimates on arrays with the same bounds DIM trains with.

A separable critic T(x, y) = f(x) . g(y) (two MLPs, as in Poole et al., 2019) is trained on a random part
of the samples with the chosen bound's loss, scoring every pair of a minibatch; the estimate is the bound
evaluated on the held-out samples, every held-out pair scored. Held-out evaluation keeps the critic from
rewarding memorised pairs, and scoring all held-out pairs lifts InfoNCE's log(1 + negatives) cap far above
the training batch's.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.mi.bounds import DonskerVaradhan, infonce, jsd, nwj, smile
from dim_lightning.mi.negatives import all_pairs
from dim_lightning.mi.validation import paired


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )


class SeparableCritic(nn.Module):
    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, embed: int = 32) -> None:
        super().__init__()
        self.f = _mlp(x_dim, hidden, embed)
        self.g = _mlp(y_dim, hidden, embed)

    def embed_code(self, x: Tensor) -> Tensor:
        return self.f(x)

    def embed_features(self, y: Tensor) -> Tensor:
        return self.g(y).unsqueeze(1)

    def score_all(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.einsum("ne,kme->nkm", a, b)


def _estimator(bound: str, tau: float):
    estimators = {"infonce": infonce, "nwj": nwj, "jsd": jsd, "smile": functools.partial(smile, tau=tau)}
    return DonskerVaradhan() if bound == "dv" else estimators[bound]


def neural_mi(
    x,
    y,
    bound: str = "infonce",
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 5e-4,
    hidden: int = 256,
    embed: int = 32,
    holdout: float = 0.3,
    max_eval: int = 4096,
    tau: float = 5.0,
    seed: int = 0,
) -> float:
    """Train a critic with `bound` on (1 - holdout) of the rows, return the bound on the held-out rows."""
    x, y = paired(x, y)
    n = len(x)
    n_eval = min(round(holdout * n), max_eval)
    require(0 < holdout < 1, f"holdout must be in (0, 1), got {holdout}")
    require(
        n_eval >= 2 and n - n_eval >= batch_size,
        f"neural MI needs at least {batch_size} training rows and 2 held-out rows; got n={n} with "
        f"holdout={holdout}; pass more samples or a smaller batch_size",
    )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    x_t = (x_t - x_t[train_idx].mean(0)) / x_t[train_idx].std(0).clamp_min(1e-8)
    y_t = (y_t - y_t[train_idx].mean(0)) / y_t[train_idx].std(0).clamp_min(1e-8)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        critic = SeparableCritic(x.shape[1], y.shape[1], hidden, embed)
        estimator = _estimator(bound, tau)
        optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
        for _ in range(steps):
            batch = train_idx[torch.randint(len(train_idx), (batch_size,), generator=generator)]
            scores = all_pairs(critic, critic.embed_code(x_t[batch]), critic.embed_features(y_t[batch]))
            loss = estimator(scores).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        critic.eval()
        if isinstance(estimator, nn.Module):
            estimator.eval()
        with torch.no_grad():
            a, b = critic.embed_code(x_t[eval_idx]), critic.embed_features(y_t[eval_idx])
            return float(estimator(all_pairs(critic, a, b)).mi)
