"""Write a generated tree in the exact tiny-imagenet-200 layout (default: full size, 200 classes x 500 train,
10,000 val, 10,000 test, 64x64 JPEGs, every tenth grayscale) for measurements at the real scale. Each class has its own
colour and grating texture statistics (`tests.datasets.textured_photos`), so probe accuracy means something.
Write it outside the repository; it is not committed.

    python benchmarks/tiny_imagenet_tree.py /work/data/tiny-imagenet-200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.datasets import textured_photos, write_tiny_imagenet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="where to write it (must not exist)")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--test-count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    write_tiny_imagenet(
        args.root,
        per_class=args.per_class,
        val_per_class=args.val_per_class,
        classes=args.classes,
        gray_every=10,
        test_count=args.test_count,
        photos=lambda label, count, size: textured_photos(label, count, size, args.seed),
    )
    print(json.dumps({"root": str(args.root), "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
