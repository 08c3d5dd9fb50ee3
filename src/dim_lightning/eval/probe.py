"""Scores of frozen features: a linear probe (multinomial logistic regression), the paper's MLP probe, weighted
kNN and retrieval precision@k.

The linear probe standardises features with train statistics, picks its L2 strength on a stratified 20%
hold-out of the train split, refits on all of train and reports top-1 accuracy on each split it is given
(the selection split `val` and the held-out `test`: one fit, both scored). It runs
full-batch L-BFGS on whatever device the features are on, so the same code scores 1,000 or 100,000 images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dim_lightning.data.base import stratified_split
from dim_lightning.eval.retrieval import nearest
from dim_lightning.utils.early_stopping import BestState
from dim_lightning.utils.timing import progress

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def fit_logistic_regression(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int = 100
) -> tuple[Tensor, Tensor]:
    """Weights [D, C] and bias [C] minimising mean cross-entropy + weight_decay/2 * |W|^2."""
    weight = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, tolerance_grad=1e-6, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


Split = tuple[Tensor, Tensor]  # (features [N, D], labels [N])


def standardized(train_x: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """`train_x` and every other split scaled with the train split's per-feature mean and std (float32)."""
    train_x = train_x.float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    return tuple((x.float() - mean) / std for x in (train_x, *others))


def num_classes_of(*labels: Tensor) -> int:
    return int(max(y.max() for y in labels if len(y))) + 1


def _accuracy(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    return ((x @ weight + bias).argmax(1) == y).float().mean().item()


@dataclass(frozen=True)
class LinearProbeFit:
    """A fitted linear probe: features are standardised with the train split's `mean` and `std`, then
    classified by `x @ weight + bias`."""

    mean: Tensor
    std: Tensor
    weight: Tensor
    bias: Tensor

    def correct(self, x: Tensor, y: Tensor) -> int:
        """How many of the features `x` [N, D] (any dtype; one chunk of a split) are classified as `y`."""
        logits = ((x.float() - self.mean) / self.std) @ self.weight + self.bias
        return int((logits.argmax(1) == y).sum())

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return self.correct(x, y) / len(y)


def row_space_basis(x: Tensor) -> Tensor | None:
    """An orthonormal basis Q [D, N] of the span of the rows of `x` [N, D] when there are over twice as many
    features as rows (below that the basis costs more than it saves), else None. An L2-regularised linear
    model's optimal weights lie in that span (representer theorem), so fitting on `x @ Q` [N, N] and mapping back
    with `Q` reaches the same optimum at a fraction of the cost (e.g. 2,000 images of 12,288 raw pixels); the
    fit stops within L-BFGS's tolerances, which are not rotation invariant, so predictions agree up to those."""
    return torch.linalg.qr(x.T).Q if x.shape[1] > 2 * x.shape[0] else None


def fit_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    seed: int = 0,
    description: str | None = None,
    in_place: bool = False,
) -> LinearProbeFit:
    """One L2-regularised linear classifier on standardised features, its strength picked on a stratified
    20% hold-out of train, refitted on all of train; a progress bar over the fits if `description`.
    `in_place`: standardise the float32 `train_x` itself instead of a copy (for inputs too large to copy,
    such as raw pixels; the caller's tensor is overwritten)."""
    x = train_x.float()
    if x is train_x and not in_place:
        x = x.clone()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x.sub_(mean).div_(std)
    basis = row_space_basis(x)
    if basis is not None:
        x = x @ basis
    fit_idx, holdout_idx = (torch.from_numpy(i) for i in stratified_split(train_y.cpu().numpy(), 0.8, seed))

    def holdout_accuracy(weight_decay: float) -> float:
        w, b = fit_logistic_regression(x[fit_idx], train_y[fit_idx], num_classes, weight_decay)
        return _accuracy(x[holdout_idx], train_y[holdout_idx], w, b)

    decays = WEIGHT_DECAYS if description is None else progress(WEIGHT_DECAYS, len(WEIGHT_DECAYS), description)
    best = max(decays, key=holdout_accuracy)
    weight, bias = fit_logistic_regression(x, train_y, num_classes, best)
    return LinearProbeFit(mean, std, weight if basis is None else basis @ weight, bias)


def linear_probe_scores(
    train_x: Tensor, train_y: Tensor, evals: dict[str, Split], seed: int = 0, description: str | None = None
) -> dict[str, float]:
    """{split: top-1 accuracy} on each of `evals` of the linear probe (`fit_linear_probe`) fitted on train."""
    num_classes = num_classes_of(train_y, *(y for _, y in evals.values()))
    probe = fit_linear_probe(train_x, train_y, num_classes, seed, description)
    return {name: probe.accuracy(x, y) for name, (x, y) in evals.items()}


def linear_probe_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, seed: int = 0) -> float:
    """Top-1 val accuracy of the linear probe (`linear_probe_scores`) fitted on train."""
    return linear_probe_scores(train_x, train_y, {"val": (val_x, val_y)}, seed)["val"]


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    description: str | None = None,
) -> float:
    """Weighted kNN top-1 (Wu et al., 2018): cosine neighbours vote with weight exp(similarity / T); a
    progress bar over the query chunks if `description`."""
    num_classes = num_classes_of(train_y, val_y)
    k = min(k, len(train_y))
    train_x, val_x = F.normalize(train_x.float(), dim=1), F.normalize(val_x.float(), dim=1)
    correct = 0
    starts = range(0, len(val_y), chunk_size)
    for start in starts if description is None else progress(starts, len(starts), description):
        similarity = val_x[start : start + chunk_size] @ train_x.T
        top = similarity.topk(k, dim=1)
        votes = torch.zeros(len(similarity), num_classes, dtype=torch.float32, device=similarity.device)
        votes.scatter_add_(1, train_y[top.indices], torch.exp(top.values / temperature))
        correct += (votes.argmax(1) == val_y[start : start + chunk_size]).sum().item()
    return correct / len(val_y)


def mlp_probe_network(in_features: int, hidden: int, num_classes: int, dropout: float) -> torch.nn.Sequential:
    """The official DIM code's MLP classifier: Linear-Dropout-BN-ReLU-Linear."""
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, hidden),
        torch.nn.Dropout(dropout),
        torch.nn.BatchNorm1d(hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, num_classes),
    )


def mlp_probe_scores(
    train_x: Tensor,
    train_y: Tensor,
    evals: dict[str, Split],
    hidden: int = 200,
    dropout: float = 0.1,
    lr: float = 1e-4,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    seed: int = 0,
    description: str | None = None,
) -> dict[str, float]:
    """The paper's classifier on frozen features (`mlp_probe_network`, 200 hidden units), Adam 1e-4,
    early stopping (`BestState`) on a stratified 10% hold-out of train (best hold-out epoch's weights are scored on each
    split of `evals`); a progress bar over the epochs if `description`. Initialisation, shuffling and dropout
    are seeded: the same inputs give the same score."""
    names = list(evals)
    train_x, *eval_x = standardized(train_x, *(evals[n][0] for n in names))
    num_classes = num_classes_of(train_y, *(evals[n][1] for n in names))
    fit_idx, holdout_idx = (torch.from_numpy(i) for i in stratified_split(train_y.cpu().numpy(), 0.9, seed))
    with torch.random.fork_rng(devices=[train_x.device] if train_x.is_cuda else []):
        torch.manual_seed(seed)
        model = mlp_probe_network(train_x.shape[1], hidden, num_classes, dropout).to(train_x.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)

        def accuracy(x: Tensor, y: Tensor) -> float:
            model.eval()
            with torch.no_grad():
                return (model(x).argmax(1) == y).float().mean().item()

        best = BestState(model, patience)
        epochs = range(max_epochs) if description is None else progress(range(max_epochs), max_epochs, description)
        for _ in epochs:
            model.train()
            order = fit_idx[torch.randperm(len(fit_idx))]
            for batch in order.split(batch_size):
                if len(batch) < 2:  # BatchNorm needs two samples
                    continue
                with torch.enable_grad():
                    loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            if best.check(accuracy(train_x[holdout_idx], train_y[holdout_idx])):
                break
        best.restore()
        return {n: accuracy(x, evals[n][1]) for n, x in zip(names, eval_x, strict=True)}


def mlp_probe_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, **options) -> float:
    """Top-1 val accuracy of the MLP probe (`mlp_probe_scores`, same `options`) fitted on train."""
    return mlp_probe_scores(train_x, train_y, {"val": (val_x, val_y)}, **options)["val"]


def precision_at_k(
    query_x: Tensor, query_y: Tensor, gallery_x: Tensor, gallery_y: Tensor, k: int = 10, metric: str = "l2"
) -> float:
    """Mean fraction of each query's k nearest gallery items (L2 distance or cosine similarity) that share
    the query's label: the blog recipe's retrieval picture as a number."""
    return (gallery_y[nearest(query_x, gallery_x, metric, k)] == query_y[:, None]).float().mean().item()
