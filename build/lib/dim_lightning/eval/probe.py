"""Scores of frozen features: a linear probe (multinomial logistic regression) and weighted kNN.

The linear probe standardises features with train statistics, picks its L2 strength on a stratified 20%
hold-out of the train split, refits on all of train and reports top-1 accuracy on the val split. It runs
full-batch L-BFGS on whatever device the features are on, so the same code scores 1,000 or 100,000 images.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor

from dim_lightning.eval.retrieval import nearest

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


def standardized(train_x: Tensor, val_x: Tensor) -> tuple[Tensor, Tensor]:
    """Both splits scaled with the train split's per-feature mean and std (float32)."""
    train_x, val_x = train_x.float(), val_x.float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    return (train_x - mean) / std, (val_x - mean) / std


def num_classes_of(train_y: Tensor, val_y: Tensor) -> int:
    return int(max(train_y.max(), val_y.max())) + 1


def _accuracy(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    return ((x @ weight + bias).argmax(1) == y).float().mean().item()


def linear_probe_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, seed: int = 0) -> float:
    """Top-1 val accuracy of an L2-regularised linear classifier on standardised frozen features."""
    train_x, val_x = standardized(train_x, val_x)
    num_classes = num_classes_of(train_y, val_y)
    fit_idx, holdout_idx = train_test_split(
        np.arange(len(train_y)), test_size=0.2, stratify=train_y.cpu().numpy(), random_state=seed
    )
    fit_idx, holdout_idx = torch.from_numpy(fit_idx), torch.from_numpy(holdout_idx)

    def holdout_accuracy(weight_decay: float) -> float:
        w, b = fit_logistic_regression(train_x[fit_idx], train_y[fit_idx], num_classes, weight_decay)
        return _accuracy(train_x[holdout_idx], train_y[holdout_idx], w, b)

    best = max(WEIGHT_DECAYS, key=holdout_accuracy)
    weight, bias = fit_logistic_regression(train_x, train_y, num_classes, best)
    return _accuracy(val_x, val_y, weight, bias)


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> float:
    """Weighted kNN top-1 (Wu et al., 2018): cosine neighbours vote with weight exp(similarity / T)."""
    num_classes = num_classes_of(train_y, val_y)
    k = min(k, len(train_y))
    train_x, val_x = F.normalize(train_x.float(), dim=1), F.normalize(val_x.float(), dim=1)
    correct = 0
    for start in range(0, len(val_y), chunk_size):
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


def mlp_probe_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    hidden: int = 200,
    dropout: float = 0.1,
    lr: float = 1e-4,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    seed: int = 0,
) -> float:
    """The paper's classifier on frozen features (`mlp_probe_network`, 200 hidden units), Adam 1e-4,
    early stopping on a stratified 10% hold-out of train (best hold-out epoch's weights are scored on val).
    Initialisation, shuffling and dropout are seeded: the same inputs give the same score."""
    train_x, val_x = standardized(train_x, val_x)
    num_classes = num_classes_of(train_y, val_y)
    split = train_test_split(np.arange(len(train_y)), test_size=0.1, stratify=train_y.cpu().numpy(), random_state=seed)
    fit_idx, holdout_idx = (torch.from_numpy(i) for i in split)
    with torch.random.fork_rng(devices=[train_x.device] if train_x.is_cuda else []):
        torch.manual_seed(seed)
        model = mlp_probe_network(train_x.shape[1], hidden, num_classes, dropout).to(train_x.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)

        def accuracy(x: Tensor, y: Tensor) -> float:
            model.eval()
            with torch.no_grad():
                return (model(x).argmax(1) == y).float().mean().item()

        best_accuracy, best_state, stale = -1.0, None, 0
        for _ in range(max_epochs):
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
            holdout_accuracy = accuracy(train_x[holdout_idx], train_y[holdout_idx])
            if holdout_accuracy > best_accuracy:
                best_accuracy, best_state, stale = holdout_accuracy, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= patience:
                    break
        model.load_state_dict(best_state)
        return accuracy(val_x, val_y)


def precision_at_k(
    query_x: Tensor, query_y: Tensor, gallery_x: Tensor, gallery_y: Tensor, k: int = 10, metric: str = "l2"
) -> float:
    """Mean fraction of each query's k nearest gallery items (L2 distance or cosine similarity) that share
    the query's label: the seed's retrieval picture as a number."""
    return (gallery_y[nearest(query_x, gallery_x, metric, k)] == query_y[:, None]).float().mean().item()
