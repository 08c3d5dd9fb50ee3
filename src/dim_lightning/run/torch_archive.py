"""The zip archive of a checkpoint from someone else, checked as `torch.save` writes it before torch reads it.

`torch.save` writes stored (uncompressed) entries in one folder: the pickled structure data.pkl, a few format
records and one data/<n> entry per tensor storage; then the central directory, a zip64 end record, its locator
and the end record, in that order, with nothing before the first entry and no comment. Only such a layout is
read: Python's zipfile (which checks the entries) and torch's reader (which loads them) find the central
directory differently when bytes are put in front of the archive or a second zip64 end record is added, and
each would then see other entries (a hidden one compressed: gigabytes from a small file). So
- the end records must lie exactly where torch.save puts them and point at a directory that ends where they
  begin (`_check_layout`);
- the entries must be stored, no more than `MAX_ENTRIES`, their sizes adding up to no more than the file, with
  only the names torch.save writes (`TORCH_ENTRY`; torch looks names up without regard to case);
- torch's own reader must list the same entries at the same offsets and sizes, and the structure scanned is
  the one it returns (`archive_structure`).
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import torch

from dim_lightning.errors import DIMError, require
from dim_lightning.run.untrusted import TRUST_HINT

MAX_ENTRIES = 16_384  # one per tensor storage: a checkpoint of train.py holds a few hundred
MAX_PICKLE_BYTES = 8 * 2**20  # its pickled structure: tens to hundreds of KiB (loading costs ~40x its size)
TORCH_RECORDS = ("data.pkl", ".format_version", ".storage_alignment", "byteorder", "version", ".data/version")
TORCH_ENTRY = "|".join([*map(re.escape, TORCH_RECORDS), re.escape(".data/serialization_id"), r"data/\d{1,12}"])
DIRECTORY_ENTRY_BYTES = 512  # a directory entry: 46 bytes, its name (the archive's folder + data/<n>), extras
END, LOCATOR, ZIP64_END = 22, 20, 56  # sizes of the end record, the zip64 locator and the zip64 end record


def _refused(where: str, what: str) -> DIMError:
    return DIMError(f"{where} {what}, which a file written by torch.save never does, so it was not read. {TRUST_HINT}")


def _check_layout(path: Path, where: str) -> int:
    """The central directory's offset, read from the end records where torch.save writes them (the last 98 bytes:
    zip64 end record, locator, end record without a comment), which must describe a directory that ends where
    they begin."""
    with path.open("rb") as file:
        size = file.seek(0, 2)
        require(size >= ZIP64_END + LOCATOR + END, lambda: str(_refused(where, f"is {size} bytes, too short a zip")))
        file.seek(size - ZIP64_END - LOCATOR - END)
        tail = file.read(ZIP64_END + LOCATOR + END)
    zip64_at = size - len(tail)
    record, locator, end = tail[:ZIP64_END], tail[ZIP64_END:-END], tail[-END:]
    signature, record_size, _, _, _, _, _, count, directory_size, directory_at = struct.unpack("<4sQ2H2I4Q", record)
    canonical = (
        end[:4] == b"PK\x05\x06"
        and end[-2:] == b"\0\0"  # no comment
        and struct.unpack("<4sIQI", locator)[:3] == (b"PK\x06\x07", 0, zip64_at)
        and (signature, record_size) == (b"PK\x06\x06", ZIP64_END - 12)
        and directory_at + directory_size == zip64_at
    )
    if not canonical:
        raise _refused(
            where,
            "does not end in the zip records torch.save writes: it is truncated or corrupt (a copy cut short?), has "
            "bytes before or after them, or was written by another program",
        )
    require(
        count <= MAX_ENTRIES and directory_size <= count * DIRECTORY_ENTRY_BYTES,
        f"{where} holds {count} entries in a {directory_size}-byte directory, far more than a checkpoint of "
        f"train.py (a few hundred tensors), so it was not read. {TRUST_HINT}",
    )
    return directory_at


def _check_entries(entries: list[zipfile.ZipInfo], file_size: int, where: str) -> None:
    """Check the entries zipfile lists (see the module doc)."""
    names = [entry.filename for entry in entries]
    folder = names[0].split("/")[0] if names else ""
    known = re.compile(f"{re.escape(folder)}/({TORCH_ENTRY})")
    strange = [name for name in names if not known.fullmatch(name)]
    if strange or len(set(names)) != len(names):
        raise _refused(where, f"holds entries that torch.save does not write (e.g. {(strange or names)[0][:100]!r})")
    structure = next((entry for entry in entries if entry.filename == f"{folder}/data.pkl"), None)
    pickled = structure.file_size if structure is not None else 0
    require(
        len(entries) <= MAX_ENTRIES and pickled <= MAX_PICKLE_BYTES,
        f"{where} holds {len(entries)} entries and a {pickled}-byte structure, far more than a checkpoint of "
        f"train.py (a few hundred tensors, a structure well under 1 MiB), so it was not read. {TRUST_HINT}",
    )
    compressed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
    require(
        not compressed and all(entry.compress_size == entry.file_size for entry in entries),
        lambda: (
            f"{where} holds compressed entries ({', '.join(name[:100] for name in compressed[:3])}); torch.save "
            f"stores them uncompressed, and inflating them could take far more memory than the file, so it was not "
            f"read. {TRUST_HINT}"
        ),
    )
    declared = sum(entry.file_size for entry in entries)
    if declared > file_size:
        raise _refused(where, f"declares {declared} bytes of entries in a file of {file_size} bytes")


def _torch_view(path: Path, entries: list[zipfile.ZipInfo], where: str) -> bytes:
    """The pickled structure as torch's reader returns it, once that reader lists `entries` (checked) at the
    same offsets and sizes (its records are named without the archive's folder)."""
    reader = torch._C.PyTorchFileReader(str(path))
    ours = {entry.filename.split("/", 1)[1]: entry for entry in entries}
    same = set(reader.get_all_records()) == set(ours) and all(
        (reader.get_record_header_offset(name), reader.get_record_size(name)) == (entry.header_offset, entry.file_size)
        for name, entry in ours.items()
    )
    if not same:
        raise _refused(where, "reads as other entries to torch than to Python's zipfile")
    return reader.get_record("data.pkl") if "data.pkl" in ours else b""


def archive_structure(path: Path, where: str) -> bytes:
    """The pickled structure of the checkpoint archive at `path` as torch will unpickle it, once the archive is
    checked (see the module doc); one `DIMError` for a file that is not such an archive."""
    try:
        directory_at = _check_layout(path, where)  # first: it bounds what zipfile lists
        with zipfile.ZipFile(path) as archive:
            entries, start = archive.infolist(), archive.start_dir
        if start != directory_at:
            raise _refused(where, "has bytes before its first entry")
        _check_entries(entries, path.stat().st_size, where)
        return _torch_view(path, entries, where)
    except DIMError:
        raise
    except Exception as error:  # zipfile's, and torch's reader's (RuntimeError, IndexError, ...) on a bad file
        raise DIMError(
            f"{where} is not a PyTorch checkpoint ({str(error)[:200]}): torch.save writes a zip archive; the file "
            "is truncated or corrupt (a copy cut short?), or of another kind: pass a checkpoint written by train.py"
        ) from error
