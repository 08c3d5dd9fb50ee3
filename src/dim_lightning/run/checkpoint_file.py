"""Reading a checkpoint file from someone else at a cost bounded by its size, before anything uses it.

`torch.save` writes a zip archive of stored (uncompressed) entries: the pickled structure and one entry per
tensor storage. A file is read only if
- it is such an archive, laid out as torch.save writes it, so that Python's zipfile and torch see the same
  entries, stored and their sizes adding up to no more than the file: a compressed entry could inflate a small
  file into gigabytes, and torch allocates an entry's declared size before reading; with a bounded number of
  entries and a pickled structure of bounded size (each tensor in it becomes a Python object: a structure of
  millions of tiny views would cost gigabytes) whose strings are short (`torch_archive`, `check_archive`);
- it unpickles with `weights_only=True`: tensors and plain values, never code (`unsafe_global` names the rest);
- its structure is a tree of bounded depth without shared containers (`tree_nodes`), each tensor dense and no
  larger than the bytes stored for it (a stride-0 view could claim terabytes), and the keys train.py writes
  have their types: counters are non-negative ints, the weights a mapping of names to tensors, the run config
  a mapping of at most `MAX_CONFIG_VALUES` values.
`trust_checkpoint=true` skips all of it and unpickles the file as it is.
"""

from __future__ import annotations

import pickletools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version

from dim_lightning.errors import DIMError, require
from dim_lightning.run.torch_archive import archive_structure
from dim_lightning.run.untrusted import MAPPINGS, TENSORS, TRUST_HINT, dotted, tree_nodes, unsafe_global

MAX_STATES = 256  # loops or callbacks with a state: a checkpoint of train.py holds about 10
MAX_CONFIG_VALUES = 10_000  # a run config of train.py holds about 200
MAX_CONFIG_CHARS = 4096  # its longest strings are paths
OLDEST_LIGHTNING = Version("2.0.0")  # older checkpoints would go through Lightning's migrations
VERSION_KEY = "pytorch-lightning_version"
WANDB_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # the ids W&B makes, and names people give runs


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**53


def _version(value: Any) -> bool:
    try:
        return type(value) is str and len(value) < 64 and Version(value) >= OLDEST_LIGHTNING
    except InvalidVersion:
        return False


def _names_to_tensors(value: Any) -> bool:
    return type(value) in MAPPINGS and all(type(k) is str and type(v) in TENSORS for k, v in value.items())


def _mapping_of_mappings(value: Any) -> bool:
    """At most `MAX_STATES` entries (Lightning warns naming every callback state it finds no callback for)."""
    return (
        type(value) in MAPPINGS
        and len(value) <= MAX_STATES
        and all(type(k) is str and type(v) in MAPPINGS for k, v in value.items())
    )


def _list_of_mappings(value: Any) -> bool:
    return type(value) is list and all(type(item) in MAPPINGS for item in value)


# What train.py writes at the top level of a checkpoint: key -> (test, what it must be). Lightning's own loop,
# callback and optimizer states are compared with what the resuming trainer writes (training/restore_checks.py).
REQUIRED = {
    "epoch": (_count, "a count (an integer >= 0)"),
    "global_step": (_count, "a count (an integer >= 0)"),
    VERSION_KEY: (_version, f"a pytorch-lightning version >= {OLDEST_LIGHTNING}"),
    "state_dict": (_names_to_tensors, "a mapping of parameter names to tensors"),
}
OPTIONAL = {
    "loops": (_mapping_of_mappings, "a mapping of loop names to their states"),
    "callbacks": (_mapping_of_mappings, "a mapping of callback names to their states"),
    "optimizer_states": (_list_of_mappings, "a list of optimizer states"),
    "lr_schedulers": (_list_of_mappings, "a list of scheduler states"),
    "hparams_name": (lambda value: type(value) is str, "a string"),
    "wandb_run_id": (lambda value: type(value) is str and WANDB_RUN_ID.fullmatch(value), "a W&B run id"),
    "native_amp_scaling_state": (lambda value: False, "absent (Lightning 1.x wrote it; it is not restored)"),
}


def check_archive(path: Path, where: str) -> None:
    """Raise `DIMError` unless `path` is a zip archive as `torch.save` writes it (`torch_archive`) whose pickled
    structure's strings hold at most `MAX_CONFIG_CHARS` characters (torch's refusal message for a long pickled
    name costs time quadratic in it)."""
    structure = archive_structure(path, where)
    try:
        longest = max((len(arg) for _, arg, _ in pickletools.genops(structure) if type(arg) is str), default=0)
    except (ValueError, EOFError) as error:
        raise DIMError(f"{where} holds a corrupt pickled structure ({str(error)[:200]}); {TRUST_HINT}") from error
    require(
        longest <= MAX_CONFIG_CHARS,
        f"{where} holds a string of {longest} characters, far more than a checkpoint of train.py does (at most "
        f"{MAX_CONFIG_CHARS}), so it was not read. {TRUST_HINT}",
    )


def unreadable(where: str, error: Exception) -> DIMError:
    """Why `torch.load(weights_only=True)` could not read the file: it asks to unpickle a Python object (which
    could run code), or it is truncated or corrupt."""
    name = unsafe_global(error)
    if name:
        return DIMError(
            f"{where} holds a pickled Python object ({name[:100]}) besides tensors and plain values; unpickling "
            "it could run code, so the file was not loaded (dim-lightning checkpoints hold tensors and plain "
            f"values only). {TRUST_HINT}"
        )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    marker = next((i for i, line in enumerate(lines) if line.endswith("WeightsUnpickler error:")), None)
    reason = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else (lines or [""])[0]
    return DIMError(
        f"{where} could not be read as a PyTorch checkpoint ({type(error).__name__}: {reason[:200]}); the file "
        "is truncated or corrupt (a copy cut short?): use another checkpoint of the run, e.g. one under its "
        "checkpoints/ folder, or start afresh"
    )


def _stored_within(tensor: torch.Tensor) -> bool:
    """A dense CPU tensor that claims no more elements than the bytes stored for it."""
    if tensor.layout != torch.strided or tensor.device.type != "cpu":
        return False
    return tensor.numel() * tensor.element_size() <= tensor.untyped_storage().nbytes()


def structure_problems(checkpoint: Any, where: str) -> list[str]:
    """What is wrong with a loaded checkpoint's structure (empty when it is as train.py writes it)."""
    if type(checkpoint) not in MAPPINGS:
        return [f"it is a {type(checkpoint).__name__}, not a mapping"]
    problems = [
        f"{dotted(path)} is a {value.layout} {value.device} tensor of {value.numel()} elements stored in "
        f"{value.untyped_storage().nbytes()} bytes"
        for path, value in tree_nodes(checkpoint, where)
        if type(value) in TENSORS and not _stored_within(value)
    ]
    for key, (test, valid) in {**REQUIRED, **OPTIONAL}.items():
        if (key in checkpoint or key in REQUIRED) and not test(checkpoint.get(key)):
            problems.append(f"{key} must be {valid}")
    return problems


def run_config_of(checkpoint: dict[str, Any], where: str, trust: bool = False) -> dict[str, Any]:
    """The run config train.py saved in the checkpoint: a mapping (of at most `MAX_CONFIG_VALUES` values and strings
    of at most `MAX_CONFIG_CHARS` characters, unless `trust`)."""
    hyper_parameters = checkpoint.get("hyper_parameters")
    run_config = hyper_parameters.get("run_config") if type(hyper_parameters) in MAPPINGS else None
    require(
        type(run_config) in MAPPINGS,
        f"{where} is a PyTorch file but not a dim-lightning checkpoint (no saved run config, or not as train.py "
        f"writes it: a config mapping); pass a checkpoint written by train.py. {TRUST_HINT}",
    )
    if trust:
        return run_config
    count, longest = 0, 0
    for _, value in tree_nodes(run_config, where):
        count += 1
        longest = max(longest, len(value) if type(value) is str else 0)
    require(
        count <= MAX_CONFIG_VALUES and longest <= MAX_CONFIG_CHARS,
        f"{where}: its saved run config holds {count} values, the longest string {longest} characters, far more than "
        f"a run config of train.py (about 200 values, none over {MAX_CONFIG_CHARS} characters), so it was not read. "
        f"{TRUST_HINT}",
    )
    return run_config


def _identity(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def require_checkpoint_file(path: str | Path, where: str) -> Path:
    """`path` as a Path, or a `DIMError` when it is not a file (`where`: how the user named it)."""
    path = Path(path)
    require(
        path.is_file(),
        f"{where} is not a file; pass a checkpoint written by a run, e.g. "
        "outputs/train/runs/<run>/checkpoints/last.ckpt",
    )
    return path


def load_checkpoint_file(path: str | Path, where: str, trust: bool = False) -> dict[str, Any]:
    """The checkpoint at `path` after the checks of the module doc, or a `DIMError` naming the problem (`where`:
    how the user named the file, e.g. `ckpt_path=...`), read into memory on the CPU (not memory-mapped: then torch
    would not compare each tensor's record with the size its structure declares). `trust`: unpickled as it is,
    without those checks."""
    path = require_checkpoint_file(path, where)
    before = _identity(path)
    if not trust:
        check_archive(path, where)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as error:
        raise unreadable(where, error) from error
    require(_identity(path) == before, f"{where} changed while it was read; read it again once nothing writes it")
    problems = [] if trust else structure_problems(checkpoint, where)
    require(
        not problems,
        lambda: (
            f"{where} is not a dim-lightning checkpoint as train.py writes it ({'; '.join(problems[:5])}), so it "
            f"was not used; pass a checkpoint written by train.py. {TRUST_HINT}"
        ),
    )
    return checkpoint


def weight_problems(expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> list[str]:
    """How the `saved` weights differ from a model's state (`expected`): names missing or not the model's, and
    shapes (at most 12 listed)."""
    problems = [f"{name} is missing" for name in expected if name not in saved]
    problems += [f"{name} is not a weight of this model" for name in saved if name not in expected]
    problems += [
        f"{name} has shape {tuple(saved[name].shape)}, the model's {tuple(expected[name].shape)}"
        for name in expected
        if name in saved and saved[name].shape != expected[name].shape
    ]
    return problems if len(problems) <= 12 else [*problems[:12], f"and {len(problems) - 12} more"]
