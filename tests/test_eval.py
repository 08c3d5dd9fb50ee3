"""Probe, kNN and retrieval on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dim_lightning.eval.probe import knn_accuracy, linear_probe_accuracy
from dim_lightning.eval.retrieval import nearest_neighbours, retrieval_grid, save_retrieval_grids


def blobs(n: int, dim: int, separation: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centres = separation * torch.eye(4, dim)
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_linear_probe_separates_separable_and_not_noise() -> None:
    train_x, train_y = blobs(400, 16, separation=8.0)
    val_x, val_y = blobs(200, 16, separation=8.0, seed=1)
    assert linear_probe_accuracy(train_x, train_y, val_x, val_y) > 0.98
    noise_train = torch.randn(400, 16)
    noise_val = torch.randn(200, 16)
    assert linear_probe_accuracy(noise_train, train_y, noise_val, val_y) < 0.45  # chance is 0.25


def test_knn_votes_by_weighted_cosine_neighbours() -> None:
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1, 1])
    val_x = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(train_x, train_y, val_x, torch.tensor([0, 1]), k=2) == 1.0
    # with k = 5 the three class-1 points outvote the two class-0 neighbours only if weights were uniform;
    # at T = 0.07 the two very close class-0 points win
    assert knn_accuracy(train_x, train_y, val_x[:1], torch.tensor([0]), k=5) == 1.0


def test_retrieval_grid_rows_start_with_their_query() -> None:
    images = torch.randint(0, 256, (30, 3, 8, 6), dtype=torch.uint8)
    codes = torch.randn(30, 5)
    queries = torch.tensor([3, 17, 0])
    grid = retrieval_grid(images, codes, "l2", queries, top_k=4)
    assert grid.shape == (3 * 8, 4 * 6, 3)
    for row, query in enumerate(queries):
        assert np.array_equal(grid[row * 8 : (row + 1) * 8, :6], images[query].permute(1, 2, 0).numpy())
    assert nearest_neighbours(codes, queries, "cos", 1).squeeze(1).tolist() == queries.tolist()


def test_saved_grids_are_deterministic_and_grayscale_for_one_channel(tmp_path) -> None:
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    codes = torch.randn(40, 4)
    first = [np.asarray(Image.open(p)) for p in save_retrieval_grids(images, codes, tmp_path, seed=3)]
    second = [np.asarray(Image.open(p)) for p in save_retrieval_grids(images, codes, tmp_path, seed=3)]
    assert first[0].shape == (80, 80)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(ValueError, match="metric"):
        nearest_neighbours(codes, torch.tensor([0]), "manhattan", 2)
