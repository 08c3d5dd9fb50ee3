"""Small data sets written in the real on-disk formats, for data-module tests."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01443537", "n01629819", "n01641577"]


def _photo(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A noisy image whose colour depends on the class, so probes have something to find."""
    base = np.zeros((size, size, 3), dtype=np.float32)
    base[..., label % 3] = 180
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


def textured_photos(label: int, count: int, size: int, seed: int = 0) -> np.ndarray:
    """`count` RGB images [count, size, size, 3] of one class: the class's own mean colour and an oriented
    grating of its own frequency and contrast, with a random phase, brightness and Gaussian noise per image.
    Classes differ in colour and texture statistics (not pixel for pixel), so a probe has something real to
    find, also on grayscale copies (texture only)."""
    rng = np.random.default_rng((seed, label))
    colour = rng.uniform(60, 195, 3)
    angle, frequency, contrast = rng.uniform(0, np.pi), rng.uniform(2, 8), rng.uniform(20, 60)
    y, x = np.mgrid[0:size, 0:size] / size
    wave = 2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    pattern = contrast * np.sin(wave[None] + phase) + rng.normal(0, 20, (count, 1, 1))
    images = colour + pattern[..., None] + rng.normal(0, 30, (count, size, size, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def _noisy_colour_photos(rng: np.random.Generator) -> Callable[[int, int, int], np.ndarray]:
    return lambda label, count, size: np.stack([_photo(rng, label, size) for _ in range(count)])


def write_tiny_imagenet(
    root: Path,
    per_class: int = 12,
    val_per_class: int = 4,
    size: int = 64,
    classes: int = 3,
    gray_every: int = 4,
    test_count: int = 1,
    photos: Callable[[int, int, int], np.ndarray] | None = None,
) -> Path:
    """tiny-imagenet-200 layout: wnids.txt, words.txt, train/<wnid>/images/<wnid>_<i>.JPEG + <wnid>_boxes.txt,
    val/images + val_annotations.txt, test/images (`test_count` unlabelled images). Every `gray_every`-th
    image is a grayscale JPEG (the real set has about 10% of them). `photos(label, count, size)` draws a
    class's images (default: noisy class colours); `classes` beyond the three real wnids get made-up ones."""
    photos = photos or _noisy_colour_photos(np.random.default_rng(0))
    wnids = WNIDS[:classes] + [f"n{90000000 + i:08d}" for i in range(len(WNIDS), classes)]
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    names = ["goldfish, Carassius auratus", "European fire salamander", "bullfrog, Rana catesbeiana"]
    names += [f"made-up class {i}" for i in range(len(WNIDS), classes)]
    (root / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(wnids, names, strict=True)))

    def save(path: Path, image: np.ndarray, index: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        (picture.convert("L") if index % gray_every == gray_every - 1 else picture).save(path, "JPEG")

    for label, wnid in enumerate(wnids):
        boxes = []
        for i, image in enumerate(photos(label, per_class, size)):
            save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image, i)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    val_images = {label: iter(photos(label, val_per_class, size)) for label in range(classes)}
    annotations = []
    for i in range(val_per_class * classes):
        label = i % classes
        save(root / "val" / "images" / f"val_{i}.JPEG", next(val_images[label]), i)
        annotations.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t{size - 1}\t{size - 1}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    for i, image in enumerate(photos(0, test_count, size)):  # unlabelled in the real set; the loader ignores them
        save(root / "test" / "images" / f"test_{i}.JPEG", image, i)
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


def python2_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR-10 batch as the published files hold it: Python 2's cPickle at protocol 2, strings as 8-bit
    `str` (SHORT_BINSTRING/BINSTRING), the array as numpy 1 pickled it (`numpy.core.multiarray._reconstruct`)."""

    def string(value: bytes) -> bytes:
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + len(value).to_bytes(4, "little") + value

    def small_int(value: int) -> bytes:
        return b"K" + bytes([value]) if value < 256 else b"M" + value.to_bytes(2, "little")

    dtype = b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R"
    dtype += b"(K\x03" + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = small_int(data.shape[0]) + small_int(data.shape[1]) + b"\x86"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R"
    array += b"(K\x01" + shape + dtype + b"\x89" + string(data.tobytes()) + b"tb"
    label_list = b"](" + b"".join(small_int(label) for label in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """An all-black 8-bit RGB PNG of any size, written row block by row block: a few hundred KB on disk for
    what decodes to width x height x 3 bytes (what a decompression bomb is)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(1), bytes(1 + 3 * width)  # filter byte 0, then black pixels
    rows_per_block = max(1, 2**22 // len(row))
    idat = b"".join(
        compressor.compress(row * min(rows_per_block, height - start)) for start in range(0, height, rows_per_block)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat + compressor.flush()) + chunk(b"IEND", b"")
    )
    return path
