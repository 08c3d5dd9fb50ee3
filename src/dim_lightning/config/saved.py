"""The run config saved in a checkpoint, as `evaluate` and `load_encoder` rebuild a model from it. The file may
come from someone else, so
- only the groups they rebuild are used (`REBUILT_GROUPS`): never its trainer, callbacks, loggers or paths;
- no path is taken from it: every key the schema checks as a `path` (`data.root`, `data.cache_dir`, ...) is
  dropped (`path_keys`), so where data is read
  and caches are written is decided by the user's command line (`data=... data.root=...`) or the defaults;
- it is validated as a train config is (types, bounds, cross-field rules), its groups are mappings of plain
  values, and every key is one the schema describes (an `_args_`, a `_partial_` where conf/ has none, a
  misspelt argument are refused before anything is built), except under a `_target_` of the user's own config;
- a model is built from it on the meta device first (`build_within`): its weights must have the names and
  shapes of the file's, so the memory the real build takes is what the file itself holds.
`trust_checkpoint=true` takes the config as saved, paths included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from dim_lightning.config import CONF_DIR, checks
from dim_lightning.config.schema import MAPPING_KEYS, SCHEMA
from dim_lightning.config.validation import config_problems, leaf_keys, raise_problems
from dim_lightning.errors import DIMError, find_dim_error
from dim_lightning.run.checkpoint_file import weight_problems
from dim_lightning.run.untrusted import TRUST_HINT, conf_targets, config_targets, dotted, tree_nodes

REBUILT_GROUPS = ("model", "encoder", "critic", "estimator", "prior", "data")
PLAIN_VALUES = (str, int, float, bool, type(None))
FIX = f"it cannot be rebuilt; pass a checkpoint written by train.py. {TRUST_HINT}"


def path_keys() -> list[str]:
    """The keys of the rebuilt groups that name a file or folder (checked as `path` in the schema)."""
    return [name for name, key in SCHEMA.items() if key.check is checks.path and name.split(".")[0] in REBUILT_GROUPS]


def _shape_problems(rebuilt: dict[str, Any], where: str) -> list[str]:
    """Each rebuilt group a mapping (prior may be null) of mappings, lists and plain values."""
    problems = [
        f"{group} is {'missing' if group not in rebuilt else f'a {type(rebuilt[group]).__name__}'}, not a mapping"
        for group in REBUILT_GROUPS
        if type(rebuilt.get(group)) is not dict and not (group == "prior" and rebuilt.get(group, "") is None)
    ]
    for path, value in tree_nodes(rebuilt, where):
        key = dotted(path)
        if key in MAPPING_KEYS and type(value) is not dict and value is not None:
            problems.append(f"{key} must be a mapping of its keys")
        elif type(value) is dict and any(type(name) is not str for name in value):
            problems.append(f"{key} has keys that are not strings")
        elif type(value) not in (dict, list, *PLAIN_VALUES):
            problems.append(f"{key} is a {type(value).__name__}; a run config holds strings, numbers, true/false, null")
    return problems


def _unknown_key_problems(cfg: DictConfig, rebuilt: dict[str, Any]) -> list[str]:
    """Keys the schema does not describe, in the groups built by dim-lightning's own `_target_`s (a group built
    by one of the user's own, which `read_checkpoint` let through, has keys of its own)."""
    ours = conf_targets(CONF_DIR)
    groups = ((key.split(".")[0], target) for key, target in config_targets(rebuilt))
    users = {group for group, target in groups if target not in ours.get(group, ())}
    return [
        f"{key} is not a key of a train config (docs/config.md lists them)"
        for key, _ in leaf_keys(cfg)
        if key not in SCHEMA and key not in MAPPING_KEYS and key.split(".")[0] not in users
    ]


def saved_run_config(checkpoint: Mapping[str, Any], where: str, trust: bool = False) -> DictConfig:
    """What is rebuilt of the run config saved in a checkpoint read by `read_checkpoint` (see the module doc),
    or one `DIMError` listing every problem (`where`: how the user named the file)."""
    run_config = checkpoint["hyper_parameters"]["run_config"]
    if trust:
        return OmegaConf.create(run_config)
    rebuilt = {group: copy.deepcopy(run_config[group]) for group in REBUILT_GROUPS if group in run_config}
    what = f"the run config saved in {where}"
    raise_problems(_shape_problems(rebuilt, where), what, FIX)
    for key in path_keys():
        *parents, name = key.split(".")
        node = rebuilt
        for part in parents:
            node = node.get(part) if type(node) is dict else None
        if type(node) is dict and name in node:
            node[name] = None
    cfg = OmegaConf.create(rebuilt)
    with _rebuild_errors(where):
        problems = _unknown_key_problems(cfg, rebuilt) + config_problems(cfg)
    raise_problems(problems, what, FIX)
    return cfg


@contextmanager
def _rebuild_errors(where: str) -> Iterator[None]:
    """Whatever building from an untrusted config raises, as one `DIMError` naming the file."""
    try:
        yield
    except Exception as error:
        if find_dim_error(error) is not None:
            raise
        raise DIMError(
            f"the run config saved in {where} could not be rebuilt ({type(error).__name__}: {str(error)[:300]}); {FIX}"
        ) from error


def build_within(build: Callable[[], nn.Module], weights: Mapping[str, Tensor], where: str) -> nn.Module:
    """`build()` with `weights` loaded, the saved run config's model. Built on the meta device first: its state
    must have the names and shapes of `weights`, so a small file cannot make the real build allocate more
    than the file holds."""
    with _rebuild_errors(where), torch.device("meta"):
        expected = build().state_dict()
    raise_problems(
        weight_problems(expected, weights),
        f"the weights in {where}",
        "they are not the weights of the model its run config builds; pass a checkpoint written by train.py",
    )
    with _rebuild_errors(where):
        module = build()
    module.load_state_dict(weights)
    return module


def input_channels(weights: Mapping[str, Tensor], prefix: str = "encoder.") -> int:
    """Colour channels the encoder takes: the input width of its first convolution (every encoder starts with
    one), so that neither the training data nor a saved path is needed to rebuild it."""
    kernels = [t for k, t in weights.items() if k.startswith(prefix) and t.dim() == 4]
    if not kernels:
        raise DIMError("the checkpoint's encoder has no convolution weights; pass a checkpoint written by train.py")
    return int(kernels[0].shape[1])
