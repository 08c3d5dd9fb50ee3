"""Atomic file writes: a run killed while writing leaves the old file or the new one, never half of one; a write
that fails (disk full, a folder that is not writable) is a clear error that names the file and keeps the old one.
A process killed mid-write (SIGKILL) leaves its temporary file: `remove_leftovers` clears them."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dim_lightning.errors import DIMError

# mkstemp's name for a temporary file next to `name`: f".{name}.{8 random characters}.tmp"
TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_TORCH_WRITE_FAILED = "PytorchStreamWriter failed"  # torch.save's RuntimeError when its file write fails


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file)` on a temporary file next to `path`, flush it to disk, then rename it onto `path`:
    readers see the old file or the new one, never half of one (also when the process is killed)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        translated = _write_error(path, error)
        if translated is None:
            raise
        raise translated from error
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # the permissions of a plain open(), not mkstemp's 0600
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        translated = _write_error(path, error) if isinstance(error, Exception) else None
        if translated is None:
            raise
        raise translated from error


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode()))


def _write_error(path: Path, error: Exception) -> DIMError | None:
    """The one-paragraph error for a write that failed for a reason the user must fix (a full disk, a folder that is
    not writable); None for any other failure (a bug: keep its traceback)."""
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if code in _FULL or (isinstance(error, RuntimeError) and _TORCH_WRITE_FAILED in str(error)):
        reason, fix = "the disk is full (or over quota)", f"free space on the disk that holds {path.parent}"
    elif code in _NOT_WRITABLE:
        reason, fix = f"{path.parent} is not writable", f"make it writable (e.g. chmod -R u+w {path.parent})"
    else:
        return None
    detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    return DIMError(
        f"could not write {path}: {reason} ({detail}). Nothing already saved was lost: the previous {path.name}, if "
        f"there was one, is unchanged. {fix[0].upper()}{fix[1:]}, or use another output folder (hydra.run.dir=...; "
        "copy a run's folder there with cp -r to continue it); then run the same command again"
    )


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files that `atomic_write`s killed mid-write (SIGKILL) left in `folder` (regular files
    named as `atomic_write` names them, never a link or a folder); return their paths. Call it only while no write
    into `folder` is under way (a run's start, before it writes anything)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if TEMPORARY_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed
