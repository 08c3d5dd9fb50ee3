"""Effect of `eval.suite.max_train_images` on the linear probe: from a run's `features.npz` (codes of every
train, val and test image), the probe fitted on every train code and on the fixed, seeded, class-stratified
subsets the evaluation would use (`ImageArrayDataset.subset_index`), scored on the whole val and test splits.
Prints one JSON line per N: accuracies and the probe's fit seconds.

    python benchmarks/probe_subset.py outputs/train/runs/<run> --sizes 2000 20000
    python benchmarks/probe_subset.py --image-statistics /data/tiny-imagenet-200 --sizes 2000 20000

`--image-statistics ROOT` skips the encoder: it probes fixed, hand-made image statistics of a Tiny-ImageNet
layout tree (4x4 average-pooled RGB and the low-frequency Fourier magnitudes of the grayscale image, 112
numbers per image), cheap enough to study N on 100,000 images on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dim_lightning.data.base import ImageArrayDataset
from dim_lightning.eval.probe import linear_probe_scores


def image_statistics(images: np.ndarray, chunk: int = 5000) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> [N, 112]: 4x4-pooled RGB (48) and |FFT| of the grayscale image, 8x8 lowest (64)."""
    rows = []
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(np.asarray(images[start : start + chunk])).float() / 255
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        spectrum = torch.fft.fft2(x.mean(1)).abs()[:, :8, :8].flatten(1).log1p()
        rows.append(torch.cat([pooled, spectrum], 1))
    return torch.cat(rows)


def statistics_splits(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from dim_lightning.data.tiny_imagenet import TinyImageNetDataModule

    datamodule = TinyImageNetDataModule(root=str(root), cache_dir=str(root / ".probe_subset_cache"))
    datamodule.setup()
    return {
        name: (image_statistics(d.images), d.labels)
        for name in ("train", "val", "test")
        for d in [datamodule.split(name)]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="a run dir holding features.npz")
    parser.add_argument("--image-statistics", type=Path, metavar="ROOT", help="probe image statistics of ROOT")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.image_statistics is not None:
        part = statistics_splits(args.image_statistics)
    else:
        saved = np.load(args.run_dir / "features.npz")
        codes, labels, split = torch.from_numpy(saved["codes"]), torch.from_numpy(saved["labels"]), saved["split"]
        part = {name: (codes[split == name], labels[split == name]) for name in ("train", "val", "test")}
    train_x, train_y = part["train"]
    labels_only = ImageArrayDataset(np.empty((len(train_y), 0), dtype=np.uint8), train_y)
    for size in [*args.sizes, None]:
        index = torch.from_numpy(labels_only.subset_index(size, args.seed))
        start = time.perf_counter()
        scores = linear_probe_scores(train_x[index], train_y[index], {s: part[s] for s in ("val", "test")}, args.seed)
        seconds = time.perf_counter() - start
        row = {"train_images": len(index), "val_acc": scores["val"], "test_acc": scores["test"], "fit_s": seconds}
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
