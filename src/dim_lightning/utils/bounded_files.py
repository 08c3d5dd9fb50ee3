"""Reading a file someone else handed over at a bounded cost: regular files only (a FIFO would block, a device
never end), a size cap checked before reading, and, inside a folder they chose, no symbolic link followed (it
would read a file of their choosing, outside that folder)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnreadableFile(OSError):
    """A file that is not read: a symbolic link not to be followed, not a regular file, or over its size cap.
    The message names the file and says which."""


def open_capped(path: str | Path, limit: int, follow_symlinks: bool = True) -> BinaryIO:
    """`path` opened for binary reading, once it is a regular file of at most `limit` bytes (and, unless
    `follow_symlinks`, not a symbolic link itself: the folders above it are the caller's to check)."""
    if not follow_symlinks and os.path.islink(path):
        raise UnreadableFile(errno.ELOOP, "is a symbolic link (not followed)", str(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_symlinks else NO_FOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_symlinks:
            raise UnreadableFile(errno.ELOOP, "is a symbolic link (not followed)", str(path)) from error
        raise
    status = os.fstat(descriptor)
    problem = None
    if not stat.S_ISREG(status.st_mode):
        problem = "is not a regular file"
    elif status.st_size > limit:
        problem = f"is {status.st_size} bytes, more than the {limit} such a file needs"
    if problem:
        os.close(descriptor)
        raise UnreadableFile(errno.EINVAL, problem, str(path))
    return os.fdopen(descriptor, "rb")


def read_capped(path: str | Path, limit: int, follow_symlinks: bool = True) -> bytes:
    """The bytes of `path` (see `open_capped`); a file that grows past `limit` while read is refused too."""
    with open_capped(path, limit, follow_symlinks) as file:
        size = os.fstat(file.fileno()).st_size
        data = file.read(size + 1)  # what the file holds, and a byte more if it grew (read(n) allocates n first)
        if len(data) > size:
            data += file.read(limit + 1 - len(data))
    if len(data) > limit:
        raise UnreadableFile(errno.EFBIG, f"grew past {limit} bytes while read", str(path))
    return data


def describe(error: OSError) -> str:
    """'<file> <what is wrong>' for an error of `open_capped`/`read_capped` (an `UnreadableFile`, or the OSError
    of a file that is missing or may not be read)."""
    if not (error.filename and error.strerror):
        return str(error)
    return (
        f"{error.filename} {error.strerror}"
        if isinstance(error, UnreadableFile)
        else f"{error.filename}: {error.strerror}"
    )
