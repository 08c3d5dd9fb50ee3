"""The evaluation suite for a frozen encoder: `run_suite` is the one routine behind the end-of-training
callback and the `dim_lightning.evaluate` program (each passes in its untrained twin encoder, if any).

For each feature place (conv, fc, Y): linear probe, the paper's MLP probe, weighted kNN, and retrieval
precision@k of val queries among train images (L2 and cosine). Plus the seed's retrieval pictures,
`features.npz`, a sanity summary of the codes and, optionally, a t-SNE map. Names follow metrics.json:
`probe/fc/val_acc`, `mlp/Y/val_acc`, `knn/conv/val_acc`, `retrieval/Y/p@10_l2`, ...; the Y numbers are
also written as `probe/val_acc` and `knn/val_acc`, the run contract's headline numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from dim_lightning.atomic import atomic_write, atomic_write_text
from dim_lightning.errors import require
from dim_lightning.eval.features import PLACES, code_summary, extract_features, flat_pixels
from dim_lightning.eval.probe import knn_accuracy, linear_probe_accuracy, mlp_probe_accuracy, precision_at_k
from dim_lightning.eval.retrieval import save_retrieval_grids

COLUMNS = {"probe": "linear probe", "mlp": "MLP probe", "knn": "kNN"}


def run_suite(
    encoder: nn.Module,
    datamodule,
    output_dir: str | Path,
    device: torch.device | str = "cpu",
    random_encoder: nn.Module | None = None,
    seed: int = 0,
    **suite,
) -> dict[str, float]:
    """The whole evaluation of a frozen `encoder`: its scores (`evaluate_representation`, options `suite` =
    the `eval.suite` config), the baselines (raw pixels, and `random_encoder`, an untrained encoder of the same
    shape, when given), written to `output_dir` as `eval.json` and `eval.md`."""
    output_dir = Path(output_dir)
    metrics = evaluate_representation(encoder, datamodule, output_dir, device, seed=seed, **suite)
    metrics.update(baseline_metrics(datamodule, random_encoder, device, seed))
    atomic_write_text(output_dir / "eval.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    atomic_write_text(output_dir / "eval.md", markdown_table(metrics, suite.get("precision_k", 10)))
    return metrics


def evaluate_representation(
    encoder: nn.Module,
    datamodule,
    output_dir: str | Path,
    device: torch.device | str = "cpu",
    places: Sequence[str] = ("conv", "fc", "Y"),
    mlp: bool = True,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
    precision_k: int = 10,
    retrieval: bool = True,
    export_features: bool = True,
    tsne: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Every score of the frozen `encoder` on the datamodule's train/val splits; files go to `output_dir`."""
    unknown = sorted(set(places) - set(PLACES))
    require(not unknown, f"unknown feature place(s) {unknown}; choose from {sorted(PLACES)}")
    require("Y" in places, "eval places must include 'Y' (the code), whose scores are the run's headline numbers")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    normalize = datamodule.normalize
    train_f, train_y = extract_features(encoder, datamodule.eval_loader("train"), normalize, device, places)
    val_f, val_y = extract_features(encoder, datamodule.eval_loader("val"), normalize, device, places)
    metrics: dict[str, float] = {}
    for place in places:
        tx, vx = train_f[place], val_f[place]
        metrics[f"probe/{place}/val_acc"] = linear_probe_accuracy(tx, train_y, vx, val_y, seed=seed)
        if mlp:
            metrics[f"mlp/{place}/val_acc"] = mlp_probe_accuracy(tx, train_y, vx, val_y, seed=seed)
        metrics[f"knn/{place}/val_acc"] = knn_accuracy(tx, train_y, vx, val_y, knn_k, knn_temperature)
        for metric in ("l2", "cos"):
            metrics[f"retrieval/{place}/p@{precision_k}_{metric}"] = precision_at_k(
                vx, val_y, tx, train_y, precision_k, metric
            )
    metrics["probe/val_acc"] = metrics["probe/Y/val_acc"]
    metrics["knn/val_acc"] = metrics["knn/Y/val_acc"]
    codes = torch.cat([train_f["Y"], val_f["Y"]])
    metrics.update(code_summary(codes))
    if retrieval:
        save_retrieval_grids(datamodule.train_set.all_images()[0], train_f["Y"], output_dir, seed=seed)
    if export_features:
        split = np.array(["train"] * len(train_y) + ["val"] * len(val_y))
        arrays = {"codes": codes.numpy(), "labels": torch.cat([train_y, val_y]).numpy(), "split": split}
        atomic_write(output_dir / "features.npz", lambda file: np.savez(file, **arrays))
    if tsne:
        save_tsne(val_f["Y"], val_y, output_dir / "tsne.png", seed)
    return metrics


def baseline_metrics(
    datamodule,
    random_encoder: nn.Module | None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    max_pixel_images: int = 20000,
) -> dict[str, float]:
    """The same linear probe on raw pixels and on an untrained encoder of the same shape: the bars a learned
    representation must clear. The pixel probe uses at most `max_pixel_images` per split (a fixed random
    subset), since raw pixels of a large set do not fit in memory as floats."""
    train_images, train_y = datamodule.train_set.all_images(max_pixel_images, seed)
    val_images, val_y = datamodule.val_set.all_images(max_pixel_images, seed)
    normalize = datamodule.normalize
    metrics = {
        "baseline/pixels_probe_val_acc": linear_probe_accuracy(
            flat_pixels(train_images, normalize), train_y, flat_pixels(val_images, normalize), val_y, seed=seed
        )
    }
    if random_encoder is not None:
        train_f, train_y = extract_features(random_encoder, datamodule.eval_loader("train"), normalize, device)
        val_f, val_y = extract_features(random_encoder, datamodule.eval_loader("val"), normalize, device)
        metrics["baseline/random_init_probe_val_acc"] = linear_probe_accuracy(
            train_f["Y"], train_y, val_f["Y"], val_y, seed=seed
        )
    return metrics


def markdown_table(metrics: dict[str, float], precision_k: int = 10) -> str:
    """One row per feature place: linear probe, MLP, kNN, p@k L2 and cosine."""
    places = [p for p in PLACES if f"probe/{p}/val_acc" in metrics]
    header = [*COLUMNS.values(), f"p@{precision_k} L2", f"p@{precision_k} cos"]
    lines = ["| features | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
    for place in places:
        keys = [f"{group}/{place}/val_acc" for group in COLUMNS]
        keys += [f"retrieval/{place}/p@{precision_k}_{m}" for m in ("l2", "cos")]
        cells = [f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys]
        lines.append(f"| {place} | " + " | ".join(cells) + " |")
    baselines = {k: v for k, v in metrics.items() if k.startswith("baseline/")}
    lines += ["", *(f"- {k}: {v:.4f}" for k, v in sorted(baselines.items()))]
    return "\n".join(lines) + "\n"


def save_tsne(
    codes: Tensor, labels: Tensor, path: Path, seed: int = 0, max_points: int = 2000, size: int = 600
) -> Path:
    """A 2-D t-SNE map of the codes (scikit-learn), one colour per class, drawn with PIL."""
    from sklearn.manifold import TSNE

    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(codes), generator=generator)[:max_points]
    points = TSNE(n_components=2, random_state=seed, init="pca").fit_transform(codes[keep].numpy())
    points = (points - points.min(0)) / np.ptp(points, axis=0).clip(1e-9) * (size - 20) + 10
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    num_classes = int(labels.max()) + 1
    for (x, y), label in zip(points, labels[keep].tolist(), strict=True):
        hue = int(255 * label / max(num_classes, 1))
        color = Image.new("HSV", (1, 1), (hue, 220, 200)).convert("RGB").getpixel((0, 0))
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
    atomic_write(path, lambda file: image.save(file, format="PNG"))
    return path
