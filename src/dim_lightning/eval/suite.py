"""The evaluation suite for a frozen encoder: `run_suite` is the one routine behind the end-of-training callback
and the `dim_lightning.evaluate` program. At each feature place (conv, fc, Y) it runs every metric of the
registry (`dim_lightning.eval.metrics`), fitted on the train split (or a fixed stratified subset of
`max_train_images`, which bounds the cost at Tiny-ImageNet size) and scored on val and test, always whole; then
the retrieval pictures, `features.npz`, a sanity summary of the codes and, optionally, a t-SNE map. Every phase
is timed, logged and shown with a progress bar. Which number is which: docs/evaluation.md."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.eval.features import PLACES, code_summary, extract_features
from dim_lightning.eval.metrics import (
    HELD_OUT,
    METRICS,
    MetricContext,
    all_training_images,
    enabled_metrics,
    metric_options,
    refit_scores,
    split_suite_options,
)
from dim_lightning.eval.pixel_baseline import PIXEL_IMAGES, pixel_probe_scores
from dim_lightning.eval.probe import linear_probe_scores
from dim_lightning.eval.retrieval import save_retrieval_grids
from dim_lightning.utils.atomic import atomic_write, atomic_write_text
from dim_lightning.utils.timing import PhaseTimer

Features = dict[str, tuple[dict[str, Tensor], Tensor]]  # split -> ({place: features}, labels)


def run_suite(
    encoder: nn.Module,
    datamodule,
    output_dir: str | Path,
    device: torch.device | str = "cpu",
    random_encoder: nn.Module | None = None,
    seed: int = 0,
    max_train_images: int | None = None,
    **suite,
) -> dict[str, float]:
    """The whole evaluation of a frozen `encoder`: its scores (`evaluate_representation`, options `suite` =
    the `eval.suite` config), the baselines (raw pixels, and `random_encoder`, an untrained encoder of the same
    shape, when given; both on the same `max_train_images` subset), with seconds per phase (`time/...`;
    `time/data_s` if the data module timed its setup), written to `output_dir` as `eval.json` and `eval.md`."""
    output_dir = Path(output_dir)
    timer = PhaseTimer()
    train_set = datamodule.train_set.subset(max_train_images, seed)
    with timer.phase("eval", f"{len(train_set):,} train images, val and test whole"):
        metrics = evaluate_representation(
            encoder,
            datamodule,
            output_dir,
            device,
            seed=seed,
            timer=timer,
            train_set=train_set,
            max_train_images=max_train_images,
            **suite,
        )
        metrics.update(baseline_metrics(datamodule, random_encoder, device, seed, timer, train_set, max_train_images))
    metrics.update({**timer.seconds, **data_seconds(datamodule)})
    metrics["eval/train_images"] = len(train_set)
    metrics["eval/test_fit_images"] = min(len(train_set) + len(datamodule.split("val")), max_train_images or 2**62)
    atomic_write_text(output_dir / "eval.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    atomic_write_text(output_dir / "eval.md", eval_md(metrics, metric_options(suite)))
    return metrics


def data_seconds(datamodule) -> dict[str, float]:
    """`time/data_s`: the seconds the data module took to load, decode and cache its data, if it timed them."""
    seconds = getattr(datamodule, "setup_seconds", None)
    return {} if seconds is None else {"time/data_s": seconds}


def split_features(
    encoder: nn.Module, datamodule, train_set, device, places: Sequence[str], name: str, timer: PhaseTimer
) -> Features:
    """Features of the train split (`train_set`: the whole split or its subset) and of the held-out splits,
    one progress bar per split, timed as the phase `eval/<name>_features`."""
    splits = {"train": train_set, **{split: datamodule.split(split) for split in HELD_OUT}}
    with timer.phase(f"eval/{name}_features", ", ".join(f"{s} {len(d):,}" for s, d in splits.items())):
        return {
            split: extract_features(
                encoder, datamodule.eval_loader(dataset), datamodule.normalize, device, places, f"{name} {split}"
            )
            for split, dataset in splits.items()
        }


def place_scores(
    features: Features,
    place: str,
    switches: Mapping[str, bool],
    context: MetricContext,
    timer: PhaseTimer,
    max_train_images: int | None = None,
) -> dict[str, float]:
    """Every enabled metric of the registry at one place (`<metric>/<place>/<suffix>`), each timed as the
    phase `eval/<metric>`; val scores fitted on train, test scores on train + val (at most `max_train_images`)."""
    train = (features["train"][0][place], features["train"][1])
    held_out = {split: (features[split][0][place], features[split][1]) for split in HELD_OUT}
    all_training = all_training_images(train, held_out["val"], max_train_images, context.seed)
    metrics: dict[str, float] = {}
    for metric in enabled_metrics(switches):
        with timer.phase(f"eval/{metric.name}", place):
            described = replace(context, description=f"{metric.title} {place}")
            scores = metric.scores(train, held_out, described, all_training)
        metrics.update({f"{metric.name}/{place}/{suffix}": value for suffix, value in scores.items()})
    return metrics


def evaluate_representation(
    encoder: nn.Module,
    datamodule,
    output_dir: str | Path,
    device: torch.device | str = "cpu",
    places: Sequence[str] = tuple(PLACES),
    retrieval: bool = True,
    export_features: bool = True,
    tsne: bool = False,
    seed: int = 0,
    timer: PhaseTimer | None = None,
    train_set=None,
    max_train_images: int | None = None,
    **metric_keys: Any,
) -> dict[str, float]:
    """Every score of the frozen `encoder` fitted on `train_set` (default: the whole train split) and scored
    on the val and test splits; files go to `output_dir`; phases timed by `timer`. `metric_keys` are the
    `eval.suite` keys of the registered metrics: the switches that turn them on (`enabled_by`, e.g. `mlp`) and
    their options (e.g. `knn_k`; defaults from the registry)."""
    switches, options = split_suite_options(metric_keys)
    timer = timer or PhaseTimer()
    train_set = datamodule.train_set if train_set is None else train_set
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    features = split_features(encoder, datamodule, train_set, device, places, "trained", timer)
    metrics: dict[str, float] = {}
    for place in places:
        context = MetricContext(place, seed, options)
        metrics.update(place_scores(features, place, switches, context, timer, max_train_images))
    for metric in (m for m in enabled_metrics(switches) if m.headline):
        for split in HELD_OUT:
            require(
                f"{metric.name}/Y/{split}_acc" in metrics,
                f"evaluation metric {metric.name!r} is registered with headline=True, so it must return "
                f"'{split}_acc' (it returned {sorted(k.split('/')[-1] for k in metrics if k.startswith(metric.name))})",
            )
            metrics[f"{metric.name}/{split}_acc"] = metrics[f"{metric.name}/Y/{split}_acc"]
    with timer.phase("eval/outputs", "codes summary, retrieval pictures, features.npz, t-SNE"):
        metrics.update(write_outputs(features, train_set, output_dir, retrieval, export_features, tsne, seed))
    return metrics


def write_outputs(
    features: Features, train_set, output_dir: Path, retrieval: bool, export_features: bool, tsne: bool, seed: int
) -> dict[str, float]:
    """The codes' sanity summary, and the files: retrieval pictures, features.npz, t-SNE map."""
    codes = torch.cat([features[split][0]["Y"] for split in features])
    if retrieval:
        save_retrieval_grids(train_set.images, features["train"][0]["Y"], output_dir, seed=seed)
    if export_features:
        split = np.concatenate([np.full(len(features[s][1]), s) for s in features])
        labels = torch.cat([features[s][1] for s in features]).numpy()
        arrays = {"codes": codes.numpy(), "labels": labels, "split": split}
        atomic_write(output_dir / "features.npz", lambda file: np.savez(file, **arrays))
    if tsne:
        save_tsne(features["test"][0]["Y"], features["test"][1], output_dir / "tsne.png", seed)
    return code_summary(codes)


def baseline_metrics(
    datamodule,
    random_encoder: nn.Module | None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    timer: PhaseTimer | None = None,
    train_set=None,
    max_train_images: int | None = None,
) -> dict[str, float]:
    """The same linear probe (fitted on `train_set`, default the whole train split; refitted on train + val, at
    most `max_train_images`, for test) on raw pixels (`pixel_probe_scores`) and on an untrained encoder of the
    same shape: the bars a learned representation must clear."""
    timer = timer or PhaseTimer()
    train_set = datamodule.train_set if train_set is None else train_set
    metrics: dict[str, float] = {}
    with timer.phase("eval/baseline_pixels"):
        cap = min(PIXEL_IMAGES, max_train_images or PIXEL_IMAGES)
        scores = pixel_probe_scores(datamodule, train_set, seed, max_pixel_images=cap)
    metrics.update({f"baseline/pixels_probe_{split}_acc": acc for split, acc in scores.items()})
    if random_encoder is not None:
        features = split_features(random_encoder, datamodule, train_set, device, ("Y",), "random_init", timer)
        with timer.phase("eval/baseline_random_init_probe"):
            train = (features["train"][0]["Y"], features["train"][1])
            held_out = {split: (features[split][0]["Y"], features[split][1]) for split in HELD_OUT}
            scores = refit_scores(
                lambda fit, split: linear_probe_scores(*fit, split, seed, description="linear probe random"),
                train,
                held_out,
                all_training_images(train, held_out["val"], max_train_images, seed),
            )
        metrics.update({f"baseline/random_init_probe_{split}_acc": acc for split, acc in scores.items()})
    return metrics


def eval_md(metrics: dict[str, float], options: Mapping[str, Any] | None = None) -> str:
    """One row per feature place, one column per registered metric's column (e.g. linear probe, MLP, kNN as
    "val / test"; p@k L2 and cosine of val queries, k from `options`); then the baselines and the seconds per
    phase."""
    places = [p for p in PLACES if any(k.startswith(f"{name}/{p}/") for name in METRICS for k in metrics)]
    context = MetricContext("", options=metric_options(options or {}))
    columns = [
        (metric.name, title, suffixes) for metric in METRICS.values() for title, suffixes in metric.columns(context)
    ]
    lines = ["| features | " + " | ".join(title for _, title, _ in columns) + " |", "| --- |" + " --- |" * len(columns)]

    def cell(*keys: str) -> str:
        return " / ".join(f"{metrics[k]:.4f}" for k in keys) if all(k in metrics for k in keys) else "-"

    for place in places:
        cells = [cell(*(f"{name}/{place}/{suffix}" for suffix in suffixes)) for name, _, suffixes in columns]
        lines.append(f"| {place} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "val = the model-selection split carved from the training images (what sweeps optimize), scored by fits "
        "on train; test = the data set's official held-out split (reported, never optimized), scored by the same "
        "fits refitted on train + val.",
        "",
    ]
    extra = {k: v for k, v in metrics.items() if k.startswith(("baseline/", "time/"))}
    lines += [f"- {k}: {v:.4f}" if k.startswith("baseline/") else f"- {k}: {v:.1f}" for k, v in sorted(extra.items())]
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
