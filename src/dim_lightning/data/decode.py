"""One image file -> uint8 [3, S, S], at a memory cost bounded whatever the file claims.

An image file from others can be small on disk and huge decoded (a PNG of zeros compresses about 1000:1), so
only images of at most `MAX_PIXELS` pixels are decoded (larger JPEGs first at 1/2..1/8 scale), only in the data
sets' formats (`FORMATS`), and every decode holds its pixels from one `PixelBudget` for the process: about
400 MB at most, on any number of threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000  # more than a real photo folder holds; an image above is an unusable file
# The formats of `files.IMAGE_EXTENSIONS`, and only they: PIL picks a plugin by a file's content, not its name,
# and some run programs (EPS hands the file to Ghostscript), so a "photo" from someone else could run code.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
# PIL allocates images in blocks of this size: above glibc's largest mmap threshold (32 MiB), so a large image's
# memory goes back to the system when freed instead of staying in the malloc arena of the thread that decoded it
# (each thread would keep the peak of its largest image), and the pixel budget bounds the process's RSS too.
BLOCK_BYTES = 64 * 2**20
TOO_LARGE_FIX = (
    f"images over {MAX_PIXELS // 1_000_000} megapixels are not decoded (a data set's photos are smaller); "
    "shrink them or delete them"
)


class UnusableImage(ValueError):
    """A file that is not decoded: `too_large` when it has more than `MAX_PIXELS`, else unreadable."""

    def __init__(self, path: Path, too_large: bool = False) -> None:
        super().__init__(f"{path} {f'has more than {MAX_PIXELS} pixels' if too_large else 'could not be read'}")
        self.path, self.too_large = path, too_large


class PixelBudget:
    """At most `pixels` pixels decoded at once across threads; a decode of at most `pixels` always gets its turn.
    A decoded pixel takes at most 8 bytes (PIL's 4-byte pixel and its RGB copy), so `MAX_PIXELS` holds decoding
    to about 400 MB at once (measured: 376 MB of peak RSS for four 49-megapixel RGBA PNGs at once)."""

    def __init__(self, pixels: int) -> None:
        self.free = pixels
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self._changed:
                self.free += pixels
                self._changed.notify_all()


BUDGET = PixelBudget(MAX_PIXELS)
Image.core.set_block_size(BLOCK_BYTES)


def decode_image(path: Path, image_size: int) -> np.ndarray:
    """One file -> uint8 [3, S, S] (grayscale, palette, CMYK, ... converted to RGB); raises `UnusableImage`."""
    try:
        with Image.open(path, formats=FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                image.draft("RGB", (image_size, image_size))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale
            pixels = image.width * image.height
            if pixels > MAX_PIXELS:
                raise UnusableImage(path, too_large=True)
            with BUDGET.hold(pixels):
                image = image if image.mode == "RGB" else image.convert("RGB")
                if image.size != (image_size, image_size):
                    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except UnusableImage:
        raise
    except Image.DecompressionBombError as error:  # PIL's own limit (about 179 M pixels), at open
        raise UnusableImage(path, too_large=True) from error
    except Exception as error:  # a file's bytes decide what a decoder raises (OSError, SyntaxError, struct.error)
        raise UnusableImage(path) from error
