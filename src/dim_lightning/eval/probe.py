"""Scores of frozen features: a linear probe (multinomial logistic regression) and weighted kNN.

The linear probe standardises features with train statistics, picks its L2 strength on a stratified 20%
hold-out of the train split, refits on all of train and reports top-1 accuracy on the val split. It runs
full-batch L-BFGS on whatever device the features are on, so the same code scores 1,000 or 100,000 images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor

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


def _accuracy(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    return ((x @ weight + bias).argmax(1) == y).float().mean().item()


def linear_probe_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, seed: int = 0) -> float:
    """Top-1 val accuracy of an L2-regularised linear classifier on standardised frozen features."""
    train_x, val_x = train_x.float(), val_x.float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    num_classes = int(max(train_y.max(), val_y.max())) + 1
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
    num_classes = int(max(train_y.max(), val_y.max())) + 1
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
