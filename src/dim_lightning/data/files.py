"""Helpers for data sets stored as image files: layout checks with clear errors, and the cache location."""

from __future__ import annotations

from pathlib import Path

from dim_lightning.errors import DIMError, require
from dim_lightning.utils.bounded_files import describe, read_capped

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TEXT_MAX_BYTES = 16 * 2**20  # a data set's list files: Tiny-ImageNet's largest, words.txt, is 2.6 MB


def existing_root(root: str | Path | None, name: str, layout: str) -> Path:
    require(root is not None, f"data={name} needs data.root, the folder that holds the data set. {layout}")
    path = Path(root).expanduser()
    require(path.is_dir(), f"data.root={root} is not a folder. {layout}")
    return path


def required_file(path: Path, layout: str) -> Path:
    require(path.is_file(), f"{path} is missing. {layout}")
    return path


def read_text(path: Path, layout: str) -> str:
    """A data set's text file (a class list, annotations): UTF-8, at most `TEXT_MAX_BYTES`."""
    try:
        return read_capped(path, TEXT_MAX_BYTES).decode("utf-8")
    except OSError as error:
        raise DIMError(f"{describe(error)}. {layout}") from error
    except UnicodeDecodeError as error:
        raise DIMError(f"{path} is not UTF-8 text ({error}). {layout}") from error


def image_files(folder: Path, layout: str, root: Path, follow_links: bool) -> list[Path]:
    """Image files directly in `folder` (a folder below the data set's `root`), sorted; an empty or missing folder
    is an error. Unless `follow_links`, no file, nor `folder` or a folder between it and `root`, may be a symbolic
    link (`refuse_link`)."""
    require(folder.is_dir(), f"{folder} is missing. {layout}")
    if not follow_links:
        for path in (folder, *folder.parents[: len(folder.parents) - len(root.parents) - 1]):
            refuse_link(path)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    require(bool(files), f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}). {layout}")
    if not follow_links:
        for path in files:
            refuse_link(path)
    return files


def refuse_link(path: Path) -> None:
    """`DIMError` if `path` is a symbolic link: a data folder from someone else could link to files of yours (your
    photos, anything PIL reads), which training would read (decode into that folder's cache) and learn from."""
    if path.is_symlink():
        raise DIMError(
            f"{path} is a symbolic link (to {str(path.readlink())[:200]}): a data folder from someone else could "
            "link to files of yours, which training would read, so links are not followed. Copy "
            "the data without links (cp -rL), or pass data.follow_links=true if the links are yours"
        )


def cache_folder(cache_dir: str | Path | None, root: Path) -> Path:
    """The folder for the uint8 caches, created if missing: data.cache_dir (yours, used as given), by default
    <root>/.dim_cache. That one must be a real folder: a data folder from someone else may hold a `.dim_cache`
    symbolic link (or file) that would send the cache's writes wherever it points, so it is refused."""
    folder = Path(cache_dir).expanduser() if cache_dir else root / ".dim_cache"
    try:
        folder.mkdir(parents=bool(cache_dir), exist_ok=True)
    except FileExistsError:
        pass  # a link or a file: refused below
    except OSError as error:
        raise DIMError(
            f"cannot create the image cache folder {folder} ({error}); set data.cache_dir to a folder of yours"
        ) from error
    require(
        folder.is_dir() and (bool(cache_dir) or not folder.is_symlink()),
        f"{folder} is a symbolic link or not a folder, so the image cache is not written there (the data folder "
        "would choose where it goes); delete it, or set data.cache_dir to a folder of yours",
    )
    return folder
