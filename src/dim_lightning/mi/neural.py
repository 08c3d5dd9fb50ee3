"""Neural MI estimates with the same bounds DIM trains with: any bound of `dim_lightning.mi.bounds.BOUNDS`, by
name, with its options (its registered `max_grad_norm` clips the critic's gradients). A separable critic is
trained with the bound's loss, and the estimate is its bound on rows it never trained on, every pair scored (so
InfoNCE's cap is log(evaluated rows), not log(batch)): from a fixed sample, cross-fitted over folds
(`neural_mi`), or from a sampler of fresh pairs (`neural_mi_sampled`). How close each reads to the truth:
docs/mi-toolkit.md and benchmarks/README.md (`mi_ground_truth.py`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.mi import folds as fold_critics
from dim_lightning.mi.bounds import BOUNDS, Estimator, make_bound
from dim_lightning.mi.inputs import paired
from dim_lightning.mi.negatives import all_pairs
from dim_lightning.mi.progress import progress_report
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


@dataclass(frozen=True)
class NeuralOptions:
    """`neural_mi`'s options, named once: the bound (`bound`, `bound_options`), the critics' size (`hidden`,
    `embed`), the split (`folds`, `validation`), training (`steps`, `batch_size`, `lr`, early-stopped every
    `eval_every` steps after `patience` checks without a gain over `min_delta` nats), the read-out blocks
    (`max_eval` rows), `seed`, `device`, `progress`."""

    bound: str = "infonce"
    bound_options: dict = field(default_factory=dict)
    steps: int = 4000
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 64
    embed: int = 32
    folds: int = 5
    validation: float = 0.1
    max_eval: int = 4096
    eval_every: int = 25
    patience: int = 8
    min_delta: float = 0.005
    seed: int = 0
    device: str | torch.device | None = None
    progress: bool | None = None

    @property
    def max_grad_norm(self) -> float | None:
        return BOUNDS[self.bound].max_grad_norm


@dataclass(frozen=True)
class CrossFit:
    """Trained fold critics, as every row's embeddings under each fold's critic (`a`, `b`: [folds, n, embed]),
    with each fold's read-out rows (`parts`), its bound instance, and the most rows scored at once."""

    a: Tensor
    b: Tensor
    parts: list[Tensor]
    estimators: list
    max_eval: int
    steps_run: int

    def read_out(self, rows: Tensor | None = None) -> float:
        """The mean of each fold's bound on its read-out rows (only those among `rows` if given), each read
        out in near-equal blocks of at most `max_eval` rows, every pair of a block scored (memory grows with
        the square of a block), weighted by block size."""
        total, count = 0.0, 0
        for k, part in enumerate(self.parts):
            kept = part if rows is None else part[torch.isin(part, rows)]
            if len(kept) < 2:
                continue
            for block in kept.tensor_split(math.ceil(len(kept) / self.max_eval)):
                total += len(block) * _read_block(self.estimators[k], self.a[k, block], self.b[k, block])
                count += len(block)
        require(count > 0, "no fold has 2 rows left to read out; pass more rows")
        return total / count


def _read_block(estimator, a: Tensor, b: Tensor) -> float:
    if isinstance(estimator, nn.Module):
        estimator.eval()
    with torch.no_grad():
        return float(estimator(fold_critics.pair_scores(a[None], b[None])[0]).mi)


def default_device() -> torch.device:
    """A GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _split(n: int, k: int, n_val: int, generator: torch.Generator) -> tuple[list[Tensor], Tensor, list[Tensor]]:
    """Random read-out parts, then for each fold (the other parts) its validation rows [k, n_val] and its
    training rows."""
    parts = list(torch.randperm(n, generator=generator).tensor_split(k))
    rests = [torch.cat([p for j, p in enumerate(parts) if j != i]) for i in range(k)]
    return parts, torch.stack([rest[:n_val] for rest in rests]), [rest[n_val:] for rest in rests]


def _train_folds(x: Tensor, y: Tensor, split: tuple, critics, estimators: list, options: NeuralOptions, report) -> int:
    """Train `critics` (one per fold) on their training rows, early-stopped on their validation rows, all
    folds at once. Batches of `options.batch_size` rows (or all training rows if fewer) per fold."""
    _, val_idx, train_idx = split
    generator = torch.Generator().manual_seed(options.seed + 1)
    sizes = torch.tensor([len(t) for t in train_idx])
    rows = min(options.batch_size, int(sizes.min()))
    padded = nn.utils.rnn.pad_sequence(train_idx, batch_first=True)

    def next_batch() -> tuple[Tensor, Tensor]:
        pick = (torch.rand(len(sizes), rows, generator=generator) * sizes[:, None]).long()
        batch = padded.gather(1, pick).to(x.device)
        return x[batch], y[batch]

    x_val, y_val = x[val_idx.to(x.device)], y[val_idx.to(x.device)]

    def validate() -> list[float]:
        return fold_critics.evaluate(critics, estimators, x_val, y_val)

    return fold_critics.train(critics, estimators, next_batch, validate, options, report)


def _checked_split(n: int, options: NeuralOptions) -> int:
    """The validation rows per fold, once the split's sizes are checked."""
    k, validation, max_eval = options.folds, options.validation, options.max_eval
    require(k >= 2, f"folds must be at least 2 (a part is read out by a critic trained on the others), got {k}")
    require(0 < validation < 1, f"validation must be in (0, 1), got {validation}")
    require(max_eval >= 2, f"max_eval must be at least 2, got {max_eval}")
    require(options.steps >= 1, f"neural MI needs steps >= 1, got {options.steps}")
    n_val = min(round(validation * (n - math.ceil(n / k))), max_eval)
    require(
        n // k >= 2 and n_val >= 2 and n - math.ceil(n / k) - n_val >= 2,
        f"neural MI needs at least 2 rows in each of {k} folds, 2 validation rows and 2 training rows; "
        f"got n={n} with validation={validation}; pass more samples, fewer folds or a larger validation",
    )
    return n_val


def fit_neural(x, y, options: NeuralOptions) -> CrossFit:
    """`neural_mi`'s trained fold critics (a `CrossFit`): read out once by `neural_mi`, or again on
    resampled rows for a bootstrap interval."""
    make_bound(options.bound, **options.bound_options)  # an unknown bound or option is an error before any work
    x, y = paired(x, y)
    n_val = _checked_split(len(x), options)
    device = torch.device(options.device) if options.device is not None else default_device()
    x_t, y_t = (torch.from_numpy(v).float() for v in (x, y))
    x_t, y_t = _standardizer(x_t)(x_t).to(device), _standardizer(y_t)(y_t).to(device)
    k = options.folds
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        split = _split(len(x), k, n_val, torch.Generator().manual_seed(options.seed))
        critics = fold_critics.FoldCritics(k, x.shape[1], y.shape[1], options.hidden, options.embed).to(device)
        estimators = [make_bound(options.bound, **options.bound_options) for _ in range(k)]
        estimators = [e.to(device) if isinstance(e, nn.Module) else e for e in estimators]
        description = f"{options.bound}: {k} fold critics"
        with progress_report(description, options.steps, options.progress) as report:
            steps_run = _train_folds(x_t, y_t, split, critics, estimators, options, report)
            report(options.steps, f"stopped at step {steps_run}")
    a, b = fold_critics.embed_rows(critics, x_t, y_t)
    return CrossFit(a, b, [p.to(device) for p in split[0]], estimators, options.max_eval, steps_run)


def neural_mi(
    x,
    y,
    bound: str = "infonce",
    steps: int = 4000,
    batch_size: int = 256,
    lr: float = 2e-3,
    hidden: int = 64,
    embed: int = 32,
    folds: int = 5,
    validation: float = 0.1,
    max_eval: int = 4096,
    eval_every: int = 25,
    patience: int = 8,
    min_delta: float = 0.005,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    **bound_options,
) -> float:
    """MI in nats from a fixed sample, cross-fitted: the rows are split into `folds` parts, and each part is
    read out by a critic trained with `bound` on the other parts, early-stopped on a `validation` fraction of
    them (at most `max_eval` rows; `patience` checks without a gain over `min_delta` nats end it). The estimate
    is the mean of the parts' bounds, weighted by size: every row is read out once, by a critic that never saw
    it. A part is scored in blocks of at most `max_eval` rows, every pair of a block, so InfoNCE never exceeds
    log(rows of the largest block). Batches hold `batch_size` training rows, or all of them if there are fewer.
    A critic overfits a finite sample within a few epochs: early stopping and a small critic (64 hidden units)
    delay that (batches of 256 read as batches of 512 did, at a third of the time). The fold critics train
    together as one batched network (`dim_lightning.mi.folds`) on `device` (default: a GPU if there is one).
    `progress`: a bar on stderr (None: only on a terminal). `bound_options` go to the bound (e.g. tau=5.0 for
    smile)."""
    options = NeuralOptions(
        bound, bound_options, steps, batch_size, lr, hidden, embed, folds, validation, max_eval, eval_every,
        patience, min_delta, seed, device, progress,
    )  # fmt: skip
    return fit_neural(x, y, options).read_out()


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
