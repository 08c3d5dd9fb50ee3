"""K critics trained together: the folds of a cross-fitted neural MI estimate (`neural_mi`) as one batched
network, each weight stacked over the folds, so a step runs K small critics as a few batched matrix products
instead of K passes one after another. The folds share nothing but the step count: each has its own
parameters (Adam is elementwise, so one optimizer over the stack updates each fold as its own would), its
own bound instance, its own gradient clip and its own early stopping."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dim_lightning.mi.bounds import Estimator, Scores


class _FoldLinear(nn.Module):
    """`folds` independent linear maps applied to a [folds, rows, in] batch, initialised as nn.Linear."""

    def __init__(self, folds: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(folds, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(folds, 1, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)


class _FoldEmbedding(nn.Module):
    """Per fold: an MLP with two hidden ReLU layers plus a linear shortcut from input to embedding (the
    bilinear part of a Gaussian log density ratio, learnt at once), as `neural._Embedding`."""

    def __init__(self, folds: int, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            _FoldLinear(folds, in_features, hidden),
            nn.ReLU(),
            _FoldLinear(folds, hidden, hidden),
            nn.ReLU(),
            _FoldLinear(folds, hidden, out_features),
        )
        self.shortcut = _FoldLinear(folds, in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x) + self.shortcut(x)


def pair_scores(a: Tensor, b: Tensor) -> list[Scores]:
    """Each fold's `Scores` of every pair: a, b [folds, rows, embed]; row i's positive is (a_i, b_i), its
    negatives (a_i, b_j) for every j != i. The same scores as `negatives.all_pairs`, in another order within a
    row (no bound depends on it), taken by a view that skips the diagonal instead of a gather by index: the
    gather and its backward were a third of a training step."""
    scores = torch.bmm(a, b.transpose(1, 2))  # [folds, rows, rows]
    n = scores.shape[1]
    positive = scores.diagonal(dim1=1, dim2=2).unsqueeze(2)
    negative = scores.flatten(1)[:, 1:].unflatten(1, (n - 1, n + 1))[:, :, :-1].reshape(-1, n, n - 1)
    return [Scores(positive[k], negative[k]) for k in range(len(scores))]


class FoldCritics(nn.Module):
    """T_k(x, y) = f_k(x) . g_k(y) for k < folds. f starts at zero, so every untrained critic scores every
    pair 0 and every bound reads exactly 0 nats (early stopping can fall back on it)."""

    def __init__(self, folds: int, x_dim: int, y_dim: int, hidden: int, embed: int) -> None:
        super().__init__()
        self.folds = folds
        self.f = _FoldEmbedding(folds, x_dim, hidden, embed)
        self.g = _FoldEmbedding(folds, y_dim, hidden, embed)
        for parameter in (self.f.mlp[-1].weight, self.f.mlp[-1].bias, self.f.shortcut.weight):
            nn.init.zeros_(parameter)

    def bounds(self, estimators: list[Estimator], x: Tensor, y: Tensor) -> list:
        """Each fold's bound on its own rows: x [folds, rows, dx], y [folds, rows, dy], every pair scored."""
        scores = pair_scores(self.f(x), self.g(y))
        return [estimator(fold) for estimator, fold in zip(estimators, scores, strict=True)]

    def clip_each_fold(self, max_norm: float) -> None:
        """`nn.utils.clip_grad_norm_` for each fold's gradients on its own."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for grad in grads:
            grad.mul_(scale.view(-1, *([1] * (grad.dim() - 1))))


class FoldBest:
    """Early stopping for each fold: its best validation value and parameters so far (the untrained critic
    included), and how many checks in a row brought no gain of more than `min_delta`; a fold with `patience`
    such checks is done, and later values of it are ignored (as if it had stopped training). Without a
    `min_delta` the chance records of a noisy validation bound (a few hundred rows) kept low-dimensional
    critics training to the step cap."""

    def __init__(self, critics: FoldCritics, patience: int, min_delta: float = 0.0) -> None:
        self.critics, self.patience, self.min_delta = critics, patience, min_delta
        self.best = [-math.inf] * critics.folds
        self.misses = [0] * critics.folds
        self.state = {name: p.detach().clone() for name, p in critics.named_parameters()}

    def done(self) -> list[bool]:
        return [miss >= self.patience for miss in self.misses]

    def check(self, values: list[float]) -> bool:
        """Record each fold's value; True once every fold is done."""
        params = dict(self.critics.named_parameters())
        for k, (value, finished) in enumerate(zip(values, self.done(), strict=True)):
            if finished:
                continue
            if value > self.best[k]:
                self.misses[k] = 0 if value > self.best[k] + self.min_delta else self.misses[k] + 1
                self.best[k] = value
                for name, saved in self.state.items():
                    saved[k].copy_(params[name].detach()[k])
            else:
                self.misses[k] += 1
        return all(self.done())

    def restore(self) -> None:
        with torch.no_grad():
            for name, p in self.critics.named_parameters():
                p.copy_(self.state[name])


def evaluate(critics: FoldCritics, estimators: list, x: Tensor, y: Tensor) -> list[float]:
    """Each fold's bound on its rows with nothing updated (DV's moving average included)."""
    modules = [critics, *(e for e in estimators if isinstance(e, nn.Module))]
    for module in modules:
        module.eval()
    with torch.no_grad():
        values = [float(bound.mi) for bound in critics.bounds(estimators, x, y)]
    for module in modules:
        module.train()
    return values


Batch = Callable[[], tuple[Tensor, Tensor]]


def train(
    critics: FoldCritics,
    estimators: list,
    next_batch: Batch,
    validate: Callable[[], list[float]],
    options,
    report: Callable[..., None],
) -> int:
    """Adam over every fold at once with the learning rate decayed to zero over `options.steps` (cosine),
    each fold's gradient clipped on its own to `options.max_grad_norm` if set; every `options.eval_every`
    steps each fold's validation bound is checked (`FoldBest`), and training ends once every fold has
    stopped. The best state of each fold is restored. Returns the steps run."""
    optimizer = torch.optim.Adam(critics.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.steps)
    best = FoldBest(critics, options.patience, options.min_delta)
    best.check(validate())  # the untrained critics are candidates too
    step = 0
    for step in range(1, options.steps + 1):
        loss = torch.stack([bound.loss for bound in critics.bounds(estimators, *next_batch())]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if options.max_grad_norm is not None:
            critics.clip_each_fold(options.max_grad_norm)
        optimizer.step()
        schedule.step()
        if step % options.eval_every == 0 or step == options.steps:
            stop = best.check(validate())
            report(step, f"held-out {sum(best.best) / len(best.best):.3f} nats, {sum(best.done())} folds stopped")
            if stop:
                break
    best.restore()
    return step


def embed_rows(critics: FoldCritics, x: Tensor, y: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Every row embedded by every fold's critic, [folds, n, embed] each, `chunk` rows at a time."""
    critics.eval()
    with torch.no_grad():
        parts = [
            (critics.f(bx.expand(critics.folds, -1, -1)), critics.g(by.expand(critics.folds, -1, -1)))
            for bx, by in zip(x.split(chunk), y.split(chunk), strict=True)
        ]
    critics.train()
    return torch.cat([a for a, _ in parts], 1), torch.cat([b for _, b in parts], 1)
