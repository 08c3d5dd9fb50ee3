"""Helpers for data sets stored as image files: layout checks with clear errors, and the cache location."""

from __future__ import annotations

from pathlib import Path

from dim_lightning.errors import require

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def existing_root(root: str | Path | None, name: str, layout: str) -> Path:
    require(root is not None, f"data={name} needs data.root, the folder that holds the data set. {layout}")
    path = Path(root).expanduser()
    require(path.is_dir(), f"data.root={root} is not a folder. {layout}")
    return path


def required_file(path: Path, layout: str) -> Path:
    require(path.is_file(), f"{path} is missing. {layout}")
    return path


def image_files(folder: Path, layout: str) -> list[Path]:
    """Image files directly in `folder`, sorted; an empty or missing folder is an error."""
    require(folder.is_dir(), f"{folder} is missing. {layout}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    require(bool(files), f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}). {layout}")
    return files


def cache_path(cache_dir: str | Path | None, root: Path, name: str) -> Path:
    """Where a split's uint8 cache goes: data.cache_dir, by default <root>/.dim_cache."""
    return Path(cache_dir).expanduser() / name if cache_dir else root / ".dim_cache" / name
