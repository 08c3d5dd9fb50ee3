"""Image loading: decoding JPEGs every epoch vs the decode-once uint8 cache, on a generated tree in the
tiny-imagenet-200 layout. Prints JSON: cache build seconds per 1,000 images, images/s delivered as uint8
batches by each path, and time-to-first-batch of a first (cache-building) and a second (cache-opening) run."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from dim_lightning.data.decode import decode_image
from dim_lightning.data.tiny_imagenet import TinyImageNetDataModule

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.datasets import write_tiny_imagenet


class JpegDataset(Dataset):
    """The blog recipe's way, per epoch: open and decode every file on access."""

    def __init__(self, files: list[Path], image_size: int) -> None:
        self.files, self.image_size = files, image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return torch.from_numpy(decode_image(self.files[index], self.image_size).copy()), 0


def images_per_second(loader: DataLoader) -> float:
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def first_batch_seconds(root: Path, image_size: int, batch_size: int, workers: int) -> float:
    start = time.perf_counter()
    datamodule = TinyImageNetDataModule(
        root=str(root), image_size=image_size, batch_size=batch_size, num_workers=workers
    )
    datamodule.setup()
    next(iter(datamodule.train_dataloader()))
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=500, help="train images per class (3 classes)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dim-loader-"))
    try:
        root = write_tiny_imagenet(workdir / "tiny-imagenet-200", per_class=args.per_class, size=args.image_size)
        first = first_batch_seconds(root, args.image_size, args.batch_size, args.workers)
        second = first_batch_seconds(root, args.image_size, args.batch_size, args.workers)
        datamodule = TinyImageNetDataModule(
            root=str(root), image_size=args.image_size, batch_size=args.batch_size, num_workers=args.workers
        )
        datamodule.setup()
        num_images = len(datamodule.train_set) + len(datamodule.val_set)
        cached = images_per_second(datamodule.train_dataloader())
        files = datamodule.train_files()[0]
        jpeg = images_per_second(
            DataLoader(
                JpegDataset(files, args.image_size), batch_size=args.batch_size, shuffle=True, num_workers=args.workers
            )
        )
        result = {
            "train_images": num_images,
            "image_size": args.image_size,
            "workers": args.workers,
            "first_run_seconds_to_first_batch": first,
            "second_run_seconds_to_first_batch": second,
            "second_run_speedup": first / second,
            "cache_build_seconds_per_1000_images": 1000 * first / (num_images + len(datamodule.test_set)),
            "cached_uint8_images_per_s": cached,
            "jpeg_decode_images_per_s": jpeg,
            "cache_vs_jpeg_speedup": cached / jpeg,
        }
    finally:
        shutil.rmtree(workdir)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
