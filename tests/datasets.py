"""Small data sets written in the real on-disk formats, for data-module tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01443537", "n01629819", "n01641577"]


def _photo(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A noisy image whose colour depends on the class, so probes have something to find."""
    base = np.zeros((size, size, 3), dtype=np.float32)
    base[..., label % 3] = 180
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


def write_tiny_imagenet(root: Path, per_class: int = 12, val_per_class: int = 4, size: int = 64) -> Path:
    """tiny-imagenet-200 layout: wnids.txt, words.txt, train/<wnid>/images + boxes, val/images +
    val_annotations.txt, test/images. Every fourth image is a grayscale JPEG, as in the real set."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    names = ["goldfish, Carassius auratus", "European fire salamander", "bullfrog, Rana catesbeiana"]
    (root / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(WNIDS, names, strict=True)))

    def save(path: Path, label: int, index: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(_photo(rng, label, size))
        (image.convert("L") if index % 4 == 3 else image).save(path, "JPEG")

    for label, wnid in enumerate(WNIDS):
        boxes = []
        for i in range(per_class):
            save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", label, i)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    annotations = []
    for i in range(val_per_class * len(WNIDS)):
        label = i % len(WNIDS)
        save(root / "val" / "images" / f"val_{i}.JPEG", label, i)
        annotations.append(f"val_{i}.JPEG\t{WNIDS[label]}\t0\t0\t{size - 1}\t{size - 1}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    save(root / "test" / "images" / "test_0.JPEG", 0, 0)
    return root


def write_image_folder(root: Path, classes: int = 3, per_class: int = 10, size: int = 40) -> Path:
    rng = np.random.default_rng(1)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_photo(rng, label, size)).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def write_cifar10(root: Path, per_batch: int = 20) -> Path:
    rng = np.random.default_rng(2)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with (folder / "batches.meta").open("wb") as file:
        pickle.dump({b"label_names": names}, file)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch).tolist()
        data = np.stack([_photo(rng, label, 32).transpose(2, 0, 1).reshape(-1) for label in labels])
        with (folder / name).open("wb") as file:
            pickle.dump({b"data": data, b"labels": labels}, file)
    return root
