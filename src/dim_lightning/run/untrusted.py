"""Checkpoints are data, not code: what a checkpoint may hold and what a config restored from one may build.

A checkpoint from someone else is untrusted input. Loading it must never run code, so
- checkpoints hold tensors and plain values only (`require_plain_data`, checked on every save), and every read
  uses `torch.load(weights_only=True)`; a file that needs arbitrary unpickling is refused (`unsafe_global`
  names what it asks for);
- the run config saved in a checkpoint may only instantiate the `_target_`s that dim-lightning's own configs
  (conf/) or the user's own command-line config name, each in its own config group (`check_restored_config`),
  checked by exact name before anything is imported: Hydra's `instantiate` imports and calls whatever a
  `_target_` names (`os.system`, or `dim_lightning.run.checkpoints.torch.load` reached through a module attribute),
  so a prefix rule is not enough; and a target allowed in one group is not in another (the W&B logger factory,
  which can be told to trust a checkpoint, may not stand in for the data set).
One documented switch, `trust_checkpoint=true`, lifts both for a file the user trusts.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import yaml

from dim_lightning.errors import DIMError

TRUST_HINT = (
    "If you trust this file (you wrote it, or it comes from someone you trust), pass trust_checkpoint=true "
    "to load it with full unpickling and its config as saved."
)

MAPPINGS = (dict, OrderedDict)
PLAIN_CONTAINERS = (*MAPPINGS, list, tuple, set)
PLAIN_LEAVES = (str, bytes, int, float, bool, complex, type(None), torch.Size, torch.dtype, torch.device)
TENSORS = (torch.Tensor, torch.nn.Parameter)


def require_plain_data(value: Any, where: str = "checkpoint") -> None:
    """Raise `TypeError` naming the first value in `value` that `torch.load(weights_only=True)` would refuse:
    checkpoints hold tensors, plain values and dicts/lists/tuples of them only. Exact types: a subclass (an
    enum, a namedtuple, a DictConfig) is pickled by name and needs arbitrary unpickling to load."""
    kind = type(value)
    if kind in TENSORS or kind in PLAIN_LEAVES:
        return
    if kind not in PLAIN_CONTAINERS:
        raise TypeError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}: checkpoints hold tensors and plain values only "
            "(str, bytes, int, float, bool, None, and dicts/lists/tuples of them), so that loading one never "
            "runs code; convert it in the state_dict that writes it (numpy array: torch.from_numpy, numpy "
            "scalar: .item(), DictConfig: OmegaConf.to_container, Path: str)"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            require_plain_data(key, f"a key of {where}")
            require_plain_data(item, f"{where}[{key!r}]")
    else:
        for index, item in enumerate(value):
            require_plain_data(item, f"{where}[{index}]")


def unsafe_global(error: BaseException) -> str | None:
    """The Python object (module.name) a refused `weights_only` load asked for, or None when the load failed
    for another reason (a truncated or foreign file)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


MAX_DEPTH = 24  # a checkpoint of train.py nests 9 deep, its run config 5
MAX_KEY_CHARS = 1024  # its longest keys (a callback's state key) hold about 120 characters
KeyPath = tuple[str | int, ...]  # the keys from the top to a value


def dotted(path: KeyPath) -> str:
    """A key path (of string and integer keys) as a message shows it: `a.b.0.c`, each key cut to 60 characters."""
    return ".".join(str(key)[:60] + ("..." if len(str(key)) > 60 else "") for key in path) or "the top level"


def _plain_attributes(mapping: OrderedDict) -> bool:
    """Whether an OrderedDict (a state dict) carries no attribute but torch's `_metadata`, {module: {"version":
    int}}: the weights-only unpickler sets any attribute a file asks for."""
    extra = vars(mapping)
    metadata = extra.get("_metadata", {})
    return (
        set(extra) <= {"_metadata"}
        and type(metadata) in MAPPINGS
        and not getattr(metadata, "__dict__", None)
        and all(
            type(name) is str
            and type(entry) is dict
            and all(type(k) is str and type(v) is int for k, v in entry.items())
            for name, entry in metadata.items()
        )
    )


def tree_nodes(value: Any, where: str, max_depth: int = MAX_DEPTH) -> Iterator[tuple[KeyPath, Any]]:
    """Every (key path, value) below `value`, a tree of dicts, lists and tuples read from a file, in order,
    containers included, at a cost linear in the file: iterative, each container visited once, paths kept as
    tuples of the file's own keys. `DIMError` for a container reached twice (walked as the tree it claims to be,
    a file whose containers share references would cost exponential time; `torch.save` of a checkpoint never
    shares one), one nested deeper than `max_depth`, or a key that is not a string of at most `MAX_KEY_CHARS`
    characters or an integer."""
    seen: set[int] = set()
    stack: list[tuple[KeyPath, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if path:
            yield path, node
        if type(node) not in PLAIN_CONTAINERS or len(node) == 0:  # `()` is one object, however often it appears
            continue
        if id(node) in seen or len(path) >= max_depth:
            why = "is reached twice (shared references)" if id(node) in seen else f"nests over {max_depth} levels"
            raise DIMError(
                f"{where}: {dotted(path)} {why}, which no file written by train.py does, so it was not read. "
                f"{TRUST_HINT}"
            )
        seen.add(id(node))
        if type(node) is OrderedDict and not _plain_attributes(node):
            raise DIMError(
                f"{where}: {dotted(path)} carries attributes besides torch's _metadata, which no file written by "
                f"train.py does (they would reach load_state_dict), so it was not read. {TRUST_HINT}"
            )
        items = list(node.items() if isinstance(node, dict) else enumerate(node))
        for key, _ in items:
            if not (type(key) is int or (type(key) is str and len(key) <= MAX_KEY_CHARS)):
                what = f"of {len(key)} characters" if type(key) is str else f"a {type(key).__name__}"
                raise DIMError(
                    f"{where}: {dotted(path)} has a key {what} (keys are strings of at most {MAX_KEY_CHARS} "
                    f"characters or integers in a file written by train.py), so it was not read. {TRUST_HINT}"
                )
        stack.extend(((*path, key), child) for key, child in reversed(items))


def config_targets(config: Any) -> Iterator[tuple[str, Any]]:
    """Every (dotted key, `_target_` value) in a plain config tree (dicts and lists)."""
    return ((dotted(path), value) for path, value in tree_nodes(config, "a config") if path[-1] == "_target_")


Targets = Mapping[str, frozenset[str]]  # config group (a top-level key) -> the `_target_`s it may name


def targets_by_group(config: Any) -> dict[str, set[str]]:
    """{top-level key: the `_target_`s named under it} of a plain config tree."""
    groups: dict[str, set[str]] = {}
    for key, target in config_targets(config):
        groups.setdefault(key.split(".", 1)[0], set()).add(str(target))
    return groups


def merge_targets(*parts: Mapping[str, set[str] | frozenset[str]]) -> Targets:
    merged: dict[str, set[str]] = {}
    for part in parts:
        for group, targets in part.items():
            merged.setdefault(group, set()).update(targets)
    return {group: frozenset(targets) for group, targets in merged.items()}


@lru_cache(maxsize=4)
def conf_targets(conf_dir: Path) -> Targets:
    """The `_target_`s dim-lightning's own configs (`conf_dir`) name, by the config group they land in: a file of
    conf/<group>/ lands under <group>, a `# @package _global_` file (experiments, debug) under its own top keys."""
    found = []
    for file in sorted(conf_dir.rglob("*.yaml")):
        text = file.read_text()
        config = yaml.safe_load(text) or {}
        relative = file.relative_to(conf_dir).parts
        if len(relative) > 1 and "@package _global_" not in text:
            config = {relative[0]: config}
        found.append(targets_by_group(config))
    return merge_targets(*found)


def check_restored_config(run_config: Any, source: str, allowed: Targets) -> None:
    """Raise `DIMError` unless every `_target_` in `run_config` (a config restored from a checkpoint) is one that
    `allowed` lists for its config group, and no value is an interpolation (a saved run config is resolved;
    `${oc.env:...}` would read the environment). Nothing is imported or built here."""
    if not isinstance(run_config, dict):  # e.g. a YAML string: OmegaConf would parse it into targets unchecked
        raise DIMError(
            f"{source}: the run config saved in this checkpoint is a {type(run_config).__name__}, not a mapping "
            f"as train.py writes it, so it was not read. {TRUST_HINT}"
        )
    for path, value in tree_nodes(run_config, source):
        group_targets = allowed.get(str(path[0]), frozenset())
        if path[-1] == "_target_" and not (isinstance(value, str) and value in group_targets):
            raise DIMError(
                f"{source}: the run config saved in this checkpoint names {dotted(path)}={str(value)[:200]}, which "
                "neither dim-lightning's configs (conf/) nor your command line name in that config group; a config "
                f"restored from a checkpoint may only build those, so nothing was built. {TRUST_HINT}"
            )
        if isinstance(value, str) and "${" in value:
            raise DIMError(
                f"{source}: the run config saved in this checkpoint holds an interpolation at {dotted(path)} "
                f"({value[:200]}); a saved run config is resolved, so this file was not written by train.py. "
                f"{TRUST_HINT}"
            )
