"""The seed's retrieval picture: random queries (first column) and their nearest neighbours by code,
under L2 distance or cosine similarity, tiled into one uint8 image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def nearest_neighbours(codes: Tensor, queries: Tensor, metric: str, top_k: int) -> Tensor:
    """Indices [Q, top_k] of the nearest codes to each query index (the query itself comes first)."""
    if metric == "l2":
        distance = torch.cdist(codes[queries].double(), codes.double())
        return distance.topk(top_k, dim=1, largest=False).indices
    if metric == "cos":
        unit = F.normalize(codes.double(), dim=1)
        return (unit[queries] @ unit.T).topk(top_k, dim=1).indices
    raise ValueError(f"unknown retrieval metric {metric!r}; use 'l2' or 'cos'")


def retrieval_grid(images: Tensor, codes: Tensor, metric: str, queries: Tensor, top_k: int = 10) -> np.ndarray:
    """uint8 images [N, C, H, W] -> a [Q*H, top_k*W, C] grid, one query per row."""
    neighbours = nearest_neighbours(codes, queries, metric, top_k)  # [Q, top_k]
    tiles = images[neighbours]  # [Q, top_k, C, H, W]
    q, k, c, h, w = tiles.shape
    return tiles.permute(0, 3, 1, 4, 2).reshape(q * h, k * w, c).numpy()


def save_retrieval_grids(
    images: Tensor, codes: Tensor, output_dir: Path, num_queries: int = 10, top_k: int = 10, seed: int = 0
) -> list[Path]:
    """Write retrieval_l2.png and retrieval_cos.png for the same random queries (fixed by `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randperm(len(codes), generator=generator)[:num_queries]
    paths = []
    for metric in ("l2", "cos"):
        grid = retrieval_grid(images, codes, metric, queries, min(top_k, len(codes)))
        path = Path(output_dir) / f"retrieval_{metric}.png"
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
        paths.append(path)
    return paths
