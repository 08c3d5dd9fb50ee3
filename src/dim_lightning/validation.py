"""Config validation before anything runs: every value of the composed config checked for type and range,
every problem listed at once with the valid choices, raised as one `DIMError` (exit code 2, no traceback).

Rules are a table of (key, check): a check returns what is wrong with a value, or None. Keys that a config
group does not have (e.g. `data.val_fraction` for CIFAR-10) are skipped. Cross-field rules (nothing to train,
a prior weight without a prior, what the encoder needs) and `_target_`s that do not import come after.
Components keep their own checks; this module makes sure a user sees all problems before a run starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from dim_lightning.errors import DIMError, find_dim_error

Check = Callable[[Any], str | None]

PLACES = ("conv", "fc", "Y")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", "16", "bf16")
CLIP_ALGORITHMS = ("norm", "value")
_ABSENT = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A real number in [low, high] (open ends where asked)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def check(value: Any) -> str | None:
        ok = _is_number(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        return None if ok else f"must be a number in {span}"

    return check


def integer(low: int) -> Check:
    return lambda value: None if _is_int(value) and value >= low else f"must be an integer >= {low}"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(choices: Iterable[Any]) -> Check:
    choices = tuple(choices)
    return lambda value: None if value in choices else f"must be one of {', '.join(map(str, choices))}"


def optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def any_of(*checks: Check) -> Check:
    def check(value: Any) -> str | None:
        problems = [c(value) for c in checks]
        return None if None in problems else " or ".join(problems)

    return check


def list_of(check: Check, allow_empty: bool = False) -> Check:
    def check_list(value: Any) -> str | None:
        shape = "a list" if allow_empty else "a non-empty list"
        if not isinstance(value, list | tuple | ListConfig) or (not value and not allow_empty):
            return f"must be {shape}"
        problems = [p for p in map(check, value) if p]
        return f"must be {shape} whose items each {problems[0]}" if problems else None

    return check_list


positive = number(0, low_open=True)
non_negative = number(0)
fraction = number(0, 1, low_open=True, high_open=True)
limit = any_of(number(0, 1), integer(0))

RULES: list[tuple[str, Check]] = [
    ("seed", integer(0)),
    ("trust_checkpoint", boolean),
    ("model.alpha", non_negative),
    ("model.beta", non_negative),
    ("model.gamma", non_negative),
    ("model.z_dim", integer(1)),
    ("model.lr", positive),
    ("model.betas", list_of(number(0, 1, high_open=True))),
    ("model.eps", positive),
    ("model.weight_decay", non_negative),
    ("model.skip_nonfinite", boolean),
    ("model.channels_last", boolean),
    ("model.compile", boolean),
    (
        "model.compile_mode",
        optional(one_of(["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])),
    ),
    ("model.optimizer.fused", optional(boolean)),
    ("data.batch_size", integer(2)),
    ("data.num_workers", optional(integer(0))),
    ("data.image_size", integer(1)),
    ("data.val_fraction", fraction),
    ("data.crop_padding", integer(0)),
    ("data.flip", boolean),
    ("data.on_device", boolean),
    ("data.shuffle_seed", integer(0)),
    ("data.split_seed", integer(0)),
    ("data.num_train", integer(2)),
    ("data.num_val", integer(1)),
    ("data.num_classes", integer(2)),
    ("data.channels", integer(1)),
    ("critic.network.layers", integer(1)),
    ("critic.network.hidden", integer(1)),
    ("critic.network.units", integer(1)),
    ("critic.network.temperature", optional(positive)),
    ("estimator.tau", positive),
    ("estimator.ema_rate", number(0, 1, low_open=True)),
    ("prior.hidden", list_of(integer(1), allow_empty=True)),
    ("prior.lr", positive),
    ("prior.betas", list_of(number(0, 1, high_open=True))),
    ("trainer.max_epochs", any_of(integer(1), one_of([-1]))),
    ("trainer.max_steps", any_of(integer(1), one_of([-1]))),
    ("trainer.log_every_n_steps", integer(1)),
    ("trainer.check_val_every_n_epoch", optional(integer(1))),
    ("trainer.limit_train_batches", limit),
    ("trainer.limit_val_batches", limit),
    ("trainer.accumulate_grad_batches", integer(1)),
    ("trainer.precision", one_of(PRECISIONS)),
    ("trainer.deterministic", any_of(boolean, one_of(["warn"]))),
    ("trainer.gradient_clip_val", optional(non_negative)),
    ("trainer.gradient_clip_algorithm", optional(one_of(CLIP_ALGORITHMS))),
    ("callbacks.model_checkpoint.every_n_train_steps", optional(integer(1))),
    ("callbacks.inject_nan.step", integer(0)),
    ("callbacks.inject_nan.term", optional(one_of(["local", "global"]))),
    ("callbacks.preempt.step", integer(0)),
    ("callbacks.preempt.signal", one_of(["SIGTERM", "SIGUSR1", "SIGINT"])),
    ("callbacks.nonfinite_guard.check_every_n_steps", integer(1)),
    ("eval.final", boolean),
    ("eval.random_init_baseline", boolean),
    ("eval.suite.places", list_of(one_of(PLACES))),
    ("eval.suite.mlp", boolean),
    ("eval.suite.knn_k", integer(1)),
    ("eval.suite.knn_temperature", positive),
    ("eval.suite.precision_k", integer(1)),
    ("eval.suite.retrieval", boolean),
    ("eval.suite.export_features", boolean),
    ("eval.suite.tsne", boolean),
]


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    return OmegaConf.to_object(value) if isinstance(value, DictConfig | ListConfig) else value


def _show(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, dict):
        return str(value)
    return {None: "null", True: "true", False: "false"}.get(value, str(value)) if not _is_number(value) else str(value)


def table_problems(cfg: DictConfig, rules: Iterable[tuple[str, Check]] = RULES) -> list[str]:
    problems = []
    for key, check in rules:
        value = _value(cfg, key)
        if value is _ABSENT:
            continue
        problem = check(value)
        if problem:
            problems.append(f"{key}={_show(value)} {problem}")
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
    return value if _is_number(value) else default


def objective_problems(cfg: DictConfig) -> list[str]:
    """Combinations: something to train, a prior for a prior weight, options manual optimization lacks."""
    problems = []
    alpha, beta = _number_or(cfg, "model.alpha", 0.0), _number_or(cfg, "model.beta", 0.0)
    gamma = _number_or(cfg, "model.gamma", 0.0)
    if alpha <= 0 and beta <= 0:
        problems.append(
            "model.alpha and model.beta are both 0: nothing to train; set model.alpha (global MI) or "
            "model.beta (local MI) > 0"
        )
    prior = _value(cfg, "prior")
    if gamma > 0 and prior is None:
        problems.append(
            f"model.gamma={gamma} weights a prior loss, but prior=none; choose prior=kl or set model.gamma=0"
        )
    return problems


def encoder_problems(cfg: DictConfig) -> list[str]:
    """What the encoder needs of model.z_dim and data.image_size: the encoder's own checks, run on the meta
    device (no memory, no compute) so that they are listed with the rest."""
    z_dim, image_size = _value(cfg, "model.z_dim"), _value(cfg, "data.image_size")
    encoder = _value(cfg, "encoder")
    if not (_is_int(z_dim) and z_dim > 0 and _is_int(image_size) and image_size > 0 and isinstance(encoder, dict)):
        return []
    channels = _value(cfg, "data.channels")
    try:
        with torch.device("meta"):
            instantiate(
                cfg.encoder, in_channels=channels if _is_int(channels) else 3, image_size=image_size, z_dim=z_dim
            )
    except Exception as error:
        dim_error = find_dim_error(error)
        return [str(dim_error) if dim_error else f"encoder: {type(error).__name__}: {error}"]
    return []


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of a composed train config (empty when it is fine)."""
    targets = target_problems(cfg)
    encoder = [] if any(p.startswith("encoder.") for p in targets) else encoder_problems(cfg)
    return table_problems(cfg) + targets + objective_problems(cfg) + encoder


def raise_problems(problems: list[str], what: str = "the config") -> None:
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise DIMError(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in {what}; fix "
            f"{'them' if len(problems) > 1 else 'it'} on the command line (e.g. model.lr=1e-3) or in conf/:\n{listed}"
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise one `DIMError` listing every problem of a train config."""
    raise_problems(config_problems(cfg))


def validate_eval_config(cfg: DictConfig) -> None:
    """Raise one `DIMError` listing every problem of an evaluate config (the `eval` and `data` values)."""
    rules = [(k, c) for k, c in RULES if k.startswith(("eval.", "data.", "seed", "trust_checkpoint"))]
    raise_problems(table_problems(cfg, rules) + target_problems(cfg))
