"""Config validation before anything runs, derived from the schema (`dim_lightning.config.schema`): every key of
the composed config that has a schema entry is checked for type and range, every problem is listed at once with
the valid choices, raised as one `DIMError` (exit code 2, no traceback). Keys a config group does not have are
simply absent; interpolations (`${model.z_dim}`) are checked where they point.

The components built from a validated config do not repeat these checks. Cross-field rules live here and only
here: nothing to train (model.alpha and model.beta both 0), a prior weight without a prior, prior=kl without a
Gaussian code (encoder.stochastic), what model.whole_step=true cannot be combined with, a fused Adam where
Lightning clips gradients under mixed precision. `_target_`s that do not import are named here. The run config
saved in a checkpoint is validated the same way before it is rebuilt (`dim_lightning.config.saved`): it may come
from someone else.

What stays with the components is what no single key's check shows: what an encoder or a data set needs of
data.image_size (their own checks; validation runs the encoder's on the meta device so that it is listed with the
rest), what a data set's files hold (a folder's layout, the number of images,
their dtype and shape), unknown `eval.suite` keys (a metric registered at run time brings its own switch and
options), and what the whole step needs of the optimizer object it is handed (plain Adam, one parameter group).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from dim_lightning.config.checks import is_int, is_number, show
from dim_lightning.config.schema import MAPPING_KEYS, SCHEMA
from dim_lightning.errors import DIMError, find_dim_error
from dim_lightning.models.prior import AdversarialPrior, KLPrior

_ABSENT = object()
MIXED_PRECISIONS = ("16-mixed", "bf16-mixed", "16", "bf16")  # Lightning's automatic mixed precision (legacy names too)


def leaf_keys(node: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """Every (dotted key, config node) whose value is not a mapping of further keys: scalars, lists, empty
    mappings, interpolations."""
    nested = isinstance(node, DictConfig) and not node._is_interpolation() and not node._is_none()
    if nested and len(node) > 0:
        for child in node:
            yield from leaf_keys(node._get_node(child), f"{path}.{child}" if path else str(child))
    elif path:
        yield path, node


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    return OmegaConf.to_object(value) if isinstance(value, DictConfig | ListConfig) else value


def _settings_under(key: str) -> list[str]:
    """The schema's keys below `key`, but Hydra's (`_target_`, ...)."""
    return sorted(name for name in SCHEMA if name.startswith(f"{key}.") and not name.rsplit(".", 1)[1].startswith("_"))


def table_problems(cfg: DictConfig) -> list[str]:
    """Each present key checked against its schema entry (keys without one, e.g. +trainer.NAME, are Lightning's),
    and a key that holds further keys not replaced by a single value."""
    problems = []
    for key, node in leaf_keys(cfg):
        entry = SCHEMA.get(key)
        if entry is None and key in MAPPING_KEYS and not node._is_none() and not isinstance(node, DictConfig):
            problems.append(
                f"{key}={show(_value(cfg, key))} replaces a group of settings with one value; set its keys instead "
                f"({', '.join(_settings_under(key)[:3])}, ...: docs/config.md)"
            )
        if entry is None or node._is_interpolation():
            continue
        value = _value(cfg, key)
        problem = entry.check.problem(value)
        if problem:
            problems.append(f"{key}={show(value)} {problem}")
    return problems


def _targets(node: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Every (key, `_target_`) in the config."""
    if isinstance(node, DictConfig):
        for key in node:
            child_path = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield child_path, node[key]
            elif not str(key).startswith("hydra"):
                yield from _targets(node._get_node(key), child_path)


def target_problems(cfg: DictConfig) -> list[str]:
    problems = []
    for key, target in _targets(cfg):
        try:
            get_object(target)
        except Exception:
            problems.append(f"{key}={target} does not name an importable class or function")
    return problems


def _number_or(cfg: DictConfig, key: str, default: float) -> float:
    value = _value(cfg, key)
    return value if is_number(value) else default


def _builds(cfg: DictConfig, key: str, cls: type) -> bool:
    """Whether the `_target_` at `key` names `cls` (or a subclass); False when it is absent or does not import."""
    try:
        built = get_object(str(_value(cfg, key)))
    except Exception:
        return False
    return isinstance(built, type) and issubclass(built, cls)


def objective_problems(cfg: DictConfig) -> list[str]:
    """Combinations of the loss: something to train, a prior for a prior weight, a Gaussian code for prior=kl."""
    problems = []
    alpha, beta = _number_or(cfg, "model.alpha", 0.0), _number_or(cfg, "model.beta", 0.0)
    gamma = _number_or(cfg, "model.gamma", 0.0)
    if alpha == 0 and beta == 0:  # a negative weight is its own key's problem
        problems.append(
            "model.alpha and model.beta are both 0: nothing to train; set model.alpha (global MI) or "
            "model.beta (local MI) > 0"
        )
    prior = _value(cfg, "prior")
    if gamma > 0 and prior is None:
        problems.append(
            f"model.gamma={gamma} weights a prior loss, but prior=none; choose prior=kl or set model.gamma=0"
        )
    if gamma > 0 and _builds(cfg, "prior._target_", KLPrior) and _value(cfg, "encoder.stochastic") is not True:
        problems.append(
            "prior=kl needs a Gaussian code (mean and log-variance), but without encoder.stochastic=true the "
            "encoder's head is deterministic; set encoder.stochastic=true, or use prior=none (and model.gamma=0)"
        )
    return problems


def optimizer_problems(cfg: DictConfig) -> list[str]:
    """Combinations of the optimisation: what the whole step does not do (Lightning's own loop does), and a fused
    Adam where Lightning clips gradients under mixed precision (it refuses to: the fused kernel unscales them)."""
    problems = []
    clips = _number_or(cfg, "trainer.gradient_clip_val", 0.0) > 0
    precision = str(_value(cfg, "trainer.precision"))
    if _value(cfg, "model.whole_step") is True:
        unsupported = {
            "prior=adversarial (a second optimizer group)": _number_or(cfg, "model.gamma", 0.0) > 0
            and _builds(cfg, "prior._target_", AdversarialPrior),
            "trainer.gradient_clip_val": clips,
            "trainer.accumulate_grad_batches > 1": _number_or(cfg, "trainer.accumulate_grad_batches", 1) > 1,
            "model.skip_nonfinite": _value(cfg, "model.skip_nonfinite") is True,
            "trainer.precision=16-mixed (a gradient scaler)": precision in ("16-mixed", "16"),
        }
        used = [name for name, on in unsupported.items() if on]
        if used:
            problems.append(
                f"model.whole_step=true does not support {', '.join(used)}; set model.whole_step=false "
                "(Lightning's loop handles it) or drop the setting"
            )
    if _value(cfg, "model.optimizer.fused") is True and clips and precision in MIXED_PRECISIONS:
        problems.append(
            f"model.optimizer.fused=true cannot be combined with trainer.gradient_clip_val under mixed precision "
            f"(trainer.precision={precision}: Lightning refuses to clip gradients for a fused optimizer); set "
            "model.optimizer.fused=null (the unfused kernel is then chosen), or trainer.gradient_clip_val=null"
        )
    return problems


MAX_GENERATED_BYTES = 2**30  # synthetic images held in memory


def data_size_problems(cfg: DictConfig) -> list[str]:
    """Generated images fit in memory: (data.num_train + data.num_val) x channels x image_size^2 bytes."""
    sizes = [_value(cfg, f"data.{key}") for key in ("num_train", "num_val", "channels", "image_size")]
    if not all(is_int(size) and size > 0 for size in sizes):
        return []
    train, val, channels, side = sizes
    total = (train + val) * channels * side * side
    if total <= MAX_GENERATED_BYTES:
        return []
    return [
        f"data.num_train + data.num_val = {train + val} generated {channels}x{side}x{side} images take "
        f"{total / 2**30:.1f} GiB, over the {MAX_GENERATED_BYTES // 2**30} GiB they may take in memory; lower "
        "data.num_train, data.num_val or data.image_size"
    ]


def encoder_problems(cfg: DictConfig) -> list[str]:
    """What the encoder needs of model.z_dim and data.image_size: the encoder's own checks, run on the meta
    device (no memory, no compute) so that they are listed with the rest."""
    z_dim, image_size = _value(cfg, "model.z_dim"), _value(cfg, "data.image_size")
    encoder = _value(cfg, "encoder")
    if not (is_int(z_dim) and z_dim > 0 and is_int(image_size) and image_size > 0 and isinstance(encoder, dict)):
        return []
    channels = _value(cfg, "data.channels")
    try:
        with torch.device("meta"):
            instantiate(
                cfg.encoder, in_channels=channels if is_int(channels) else 3, image_size=image_size, z_dim=z_dim
            )
    except Exception as error:
        dim_error = find_dim_error(error)
        return [str(dim_error) if dim_error else f"encoder: {type(error).__name__}: {error}"]
    return []


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of a composed train config (empty when it is fine)."""
    targets = target_problems(cfg)
    encoder = [] if any(p.startswith("encoder.") for p in targets) else encoder_problems(cfg)
    combinations = objective_problems(cfg) + optimizer_problems(cfg) + data_size_problems(cfg)
    return table_problems(cfg) + targets + combinations + encoder


def raise_problems(problems: list[str], what: str = "the config", fix: str | None = None) -> None:
    """One `DIMError` listing `problems` of `what`, with how to `fix` them (default: the command line or conf/)."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        them = "them" if len(problems) > 1 else "it"
        fix = fix or f"fix {them} on the command line (e.g. model.lr=1e-3) or in conf/"
        raise DIMError(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in {what}; {fix}:\n{listed}")


def validate_config(cfg: DictConfig) -> None:
    """Raise one `DIMError` listing every problem of a train config."""
    raise_problems(config_problems(cfg))


def validate_eval_config(cfg: DictConfig) -> None:
    """Raise one `DIMError` listing every problem of an evaluate config (its own keys: eval, data, ckpt, ...)."""
    raise_problems(table_problems(cfg) + target_problems(cfg) + data_size_problems(cfg))
