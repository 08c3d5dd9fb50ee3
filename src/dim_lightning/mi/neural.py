"""Neural MI estimates with the same bounds DIM trains with: any bound of `dim_lightning.mi.bounds.BOUNDS`, by
name, with its options (its registered `max_grad_norm` clips the critic's gradients). A separable critic is
trained with the bound's loss, and the estimate is its bound on rows it never trained on, every pair scored (so
InfoNCE's cap is log(evaluated rows), not log(batch)): from a fixed sample, cross-fitted over folds
(`neural_mi`), or from a sampler of fresh pairs (`neural_mi_sampled`). How close each reads to the truth:
docs/mi-toolkit.md and benchmarks/README.md (`mi_ground_truth.py`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.mi.bounds import BOUNDS, Estimator, make_bound
from dim_lightning.mi.inputs import paired
from dim_lightning.mi.negatives import all_pairs
from dim_lightning.utils.early_stopping import BestState

Sampler = Callable[[int], tuple[np.ndarray | Tensor, np.ndarray | Tensor]]


class _Embedding(nn.Module):
    """An MLP with two hidden ReLU layers plus a linear shortcut from input to embedding: the log density ratio
    of correlated variables has a bilinear part that the shortcut learns at once."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_features),
        )
        self.shortcut = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x) + self.shortcut(x)


class SeparableCritic(nn.Module):
    """T(x, y) = f(x) . g(y), every pair of a batch scored with one matrix product (Poole et al., 2019: MLPs
    with two hidden ReLU layers, 32-d embeddings)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, embed: int = 32) -> None:
        super().__init__()
        self.f = _Embedding(x_dim, hidden, embed)
        self.g = _Embedding(y_dim, hidden, embed)
        # f starts at zero, so the untrained critic scores every pair 0: every bound reads exactly 0 nats,
        # the estimate of independence, and early stopping can fall back on it.
        for parameter in (self.f.mlp[-1].weight, self.f.mlp[-1].bias, self.f.shortcut.weight):
            nn.init.zeros_(parameter)

    def embed_code(self, x: Tensor) -> Tensor:
        return self.f(x)

    def embed_features(self, y: Tensor) -> Tensor:
        return self.g(y).unsqueeze(1)

    def score_all(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.einsum("ne,kme->nkm", a, b)


def _bound(critic: SeparableCritic, estimator, x: Tensor, y: Tensor) -> Tensor:
    return estimator(all_pairs(critic, critic.embed_code(x), critic.embed_features(y)))


def _evaluate(critic: SeparableCritic, estimator, x: Tensor, y: Tensor) -> float:
    """The bound on (x, y), every pair scored, with nothing updated (DV's moving average included)."""
    modules = [m for m in (critic, estimator) if isinstance(m, nn.Module)]
    for module in modules:
        module.eval()
    with torch.no_grad():
        value = float(_bound(critic, estimator, x, y).mi)
    for module in modules:
        module.train()
    return value


def _standardizer(reference: Tensor) -> Callable[[Tensor], Tensor]:
    mean, std = reference.mean(0), reference.std(0).clamp_min(1e-8)
    return lambda values: (values - mean) / std


def _train(
    critic: SeparableCritic,
    estimator: Estimator,
    next_batch: Callable[[], tuple[Tensor, Tensor]],
    steps: int,
    lr: float,
    max_grad_norm: float | None = None,
    validate: Callable[[], float] | None = None,
    eval_every: int = 200,
    patience: int = 5,
) -> None:
    """Adam with the learning rate decayed to zero over `steps` (cosine), gradients clipped to
    `max_grad_norm` if given. With `validate`, keep the state with the best validation bound, the untrained
    (constant) critic included, and stop after `patience` checks without a gain (`BestState`). A trained
    critic can be worse than none: with the MINE gradient on independent data it scored many nats below zero
    on held-out pairs for the first ~1,000 steps."""
    require(steps >= 1, f"neural MI needs steps >= 1, got {steps}")
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    best = BestState(critic, patience)
    if validate is not None:
        best.check(validate())  # the untrained critic is a candidate too
    for step in range(1, steps + 1):
        loss = _bound(critic, estimator, *next_batch()).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(critic.parameters(), max_grad_norm)
        optimizer.step()
        schedule.step()
        if validate is not None and (step % eval_every == 0 or step == steps) and best.check(validate()):
            break
    if validate is not None:
        best.restore()


def _evaluate_in_blocks(critic: SeparableCritic, estimator, x: Tensor, y: Tensor, max_rows: int) -> float:
    """The bound on (x, y) read out on near-equal blocks of at most `max_rows` rows, every pair of a block
    scored (memory grows with the square of a block), averaged weighted by block size."""
    blocks = math.ceil(len(x) / max_rows)
    pairs = zip(x.tensor_split(blocks), y.tensor_split(blocks), strict=True)
    return sum(len(bx) * _evaluate(critic, estimator, bx, by) for bx, by in pairs) / len(x)


@dataclass(frozen=True)
class FoldOptions:
    """How each fold's critic is built (`hidden`, `embed`), trained (`bound` with `bound_options`, `steps`,
    `batch_size`, `lr`; early-stopped every `eval_every` steps with `patience`) and read out (blocks of at
    most `max_eval` rows): `neural_mi`'s options, named once."""

    bound: str
    bound_options: dict
    steps: int
    batch_size: int
    lr: float
    hidden: int
    embed: int
    max_eval: int
    eval_every: int
    patience: int


def _fold_estimate(
    x: Tensor,
    y: Tensor,
    train_idx: Tensor,
    val_idx: Tensor,
    test_idx: Tensor,
    generator: torch.Generator,
    options: FoldOptions,
) -> float:
    """Train a critic on `train_idx` (early-stopped on `val_idx`); its bound on `test_idx`."""
    x, y = _standardizer(x[train_idx])(x), _standardizer(y[train_idx])(y)
    rows = min(options.batch_size, len(train_idx))

    def next_batch() -> tuple[Tensor, Tensor]:
        batch = train_idx[torch.randint(len(train_idx), (rows,), generator=generator)]
        return x[batch], y[batch]

    critic = SeparableCritic(x.shape[1], y.shape[1], options.hidden, options.embed)
    estimator = make_bound(options.bound, **options.bound_options)
    _train(
        critic,
        estimator,
        next_batch,
        options.steps,
        options.lr,
        BOUNDS[options.bound].max_grad_norm,
        validate=lambda: _evaluate(critic, estimator, x[val_idx], y[val_idx]),
        eval_every=options.eval_every,
        patience=options.patience,
    )
    return _evaluate_in_blocks(critic, estimator, x[test_idx], y[test_idx], options.max_eval)


def neural_mi(
    x,
    y,
    bound: str = "infonce",
    steps: int = 4000,
    batch_size: int = 512,
    lr: float = 2e-3,
    hidden: int = 64,
    embed: int = 32,
    folds: int = 5,
    validation: float = 0.1,
    max_eval: int = 4096,
    eval_every: int = 25,
    patience: int = 8,
    seed: int = 0,
    **bound_options,
) -> float:
    """MI in nats from a fixed sample, cross-fitted: the rows are split into `folds` parts, and each part is
    read out by a critic trained with `bound` on the other parts, early-stopped on a `validation` fraction of
    them (at most `max_eval` rows). The estimate is the mean of the parts' bounds, weighted by size: every row
    is read out once, by a critic that never saw it. A part is scored in blocks of at most `max_eval` rows,
    every pair of a block, so InfoNCE never exceeds log(rows of the largest block). Batches hold
    `batch_size` training rows, or all of them if there are fewer. A critic overfits a finite sample within a
    few epochs: early stopping, a smaller critic (64 hidden units) and larger batches (512) than for a sampler
    all delay that. `bound_options` go to the bound (e.g. tau=5.0 for smile)."""
    make_bound(bound, **bound_options)  # an unknown bound or option is an error before any work
    x, y = paired(x, y)
    n = len(x)
    require(folds >= 2, f"folds must be at least 2 (a part is read out by a critic trained on the others), got {folds}")
    require(0 < validation < 1, f"validation must be in (0, 1), got {validation}")
    require(max_eval >= 2, f"max_eval must be at least 2, got {max_eval}")
    n_val = min(round(validation * (n - math.ceil(n / folds))), max_eval)
    require(
        n // folds >= 2 and n_val >= 2 and n - math.ceil(n / folds) - n_val >= 2,
        f"neural MI needs at least 2 rows in each of {folds} folds, 2 validation rows and 2 training rows; "
        f"got n={n} with validation={validation}; pass more samples, fewer folds or a larger validation",
    )
    generator = torch.Generator().manual_seed(seed)
    parts = torch.randperm(n, generator=generator).tensor_split(folds)
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    options = FoldOptions(bound, bound_options, steps, batch_size, lr, hidden, embed, max_eval, eval_every, patience)
    total = 0.0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for k, test_idx in enumerate(parts):
            rest = torch.cat([part for j, part in enumerate(parts) if j != k])
            fold = _fold_estimate(x_t, y_t, rest[n_val:], rest[:n_val], test_idx, generator, options)
            total += len(test_idx) * fold
    return total / n


def neural_mi_sampled(
    sample: Sampler,
    bound: str = "infonce",
    steps: int = 4000,
    batch_size: int = 64,
    eval_size: int = 4096,
    lr: float = 2e-3,
    hidden: int = 256,
    embed: int = 32,
    seed: int = 0,
    **bound_options,
) -> float:
    """MI in nats of a distribution you can sample: `sample(n)` returns n fresh pairs (x, y) on every call.
    The critic trains on `steps` fresh batches (nothing to overfit, so no early stopping, and a 256-unit
    critic); the estimate is its bound on `eval_size` fresh pairs.
    `bound_options` go to the bound (e.g. tau=5.0 for smile)."""
    require(eval_size >= 2, f"eval_size must be at least 2, got {eval_size}")
    estimator = make_bound(bound, **bound_options)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        x, y = paired(*sample(n))
        require(len(x) == n, f"sample({n}) returned {len(x)} rows; a sampler must return exactly n pairs")
        return torch.from_numpy(x).float(), torch.from_numpy(y).float()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reference_x, reference_y = draw(eval_size)
        scale_x, scale_y = _standardizer(reference_x), _standardizer(reference_y)

        def next_batch(n: int = batch_size) -> tuple[Tensor, Tensor]:
            x, y = draw(n)
            return scale_x(x), scale_y(y)

        critic = SeparableCritic(reference_x.shape[1], reference_y.shape[1], hidden, embed)
        _train(critic, estimator, next_batch, steps, lr, BOUNDS[bound].max_grad_norm)
        return _evaluate(critic, estimator, *next_batch(eval_size))
