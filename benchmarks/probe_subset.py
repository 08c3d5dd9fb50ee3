"""Effect of `eval.suite.max_train_images` on the linear probe: from a run's `features.npz` (codes of every
train, val and test image), the probe fitted on every train code and on the fixed, seeded, class-stratified
subsets the evaluation would use (`ImageArrayDataset.subset_index`), scored on the whole val and test splits.
Prints one JSON line per N: accuracies and the probe's fit seconds.

    python benchmarks/probe_subset.py outputs/train/runs/<run> --sizes 2000 20000
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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
