"""State read from a file, compared with what this code itself writes there: the same structure, and optimizer
state that fits the optimizer it is loaded into. Both return problems (empty: it fits), so a caller can list every
problem of a file at once."""

from __future__ import annotations

from typing import Any

import torch

from dim_lightning.run.untrusted import MAPPINGS, TENSORS

ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}
DEVICE_FLAGS = ("foreach", "fused", "capturable")  # how an update runs on a device, not what it computes
# Settings torch's optimizers fill in when a state dict of an older torch lacks them (`__setstate__`).
DEFAULTED = frozenset({*DEVICE_FLAGS, "amsgrad", "maximize", "differentiable", "decoupled_weight_decay"})
MAX_RANKS = 4096  # processes of one run, each with its own entry in a checkpoint's per-rank lists


def per_rank_problems(per_rank: Any, where: str) -> list[str]:
    """A checkpoint's per-rank list (one entry per process of the run that wrote it): 1 to `MAX_RANKS` entries."""
    if type(per_rank) is not list or not 1 <= len(per_rank) <= MAX_RANKS:
        return [f"{where} must be a list of each rank's state (1 to {MAX_RANKS} ranks)"]
    return []


def _is_number(value: Any) -> bool:
    """An int or float that is finite and below 2**63 (NaN and inf fail the comparison)."""
    return type(value) in (int, float) and abs(value) < 2**63


def _leaf_problem(value: Any, template: Any) -> str | None:
    """How a leaf (not a container) read from a file differs from the template's leaf, if it does."""
    if type(template) in TENSORS:
        same = type(value) in TENSORS and value.shape == template.shape and value.dtype == template.dtype
        return None if same else f"must be a {template.dtype} tensor of shape {tuple(template.shape)}"
    if template is None:  # an optional setting
        return None if value is None or type(value) is bool or _is_number(value) else "must be null, a flag or a number"
    if type(template) is bool:
        return None if type(value) is bool else "must be true or false"
    if _is_number(template):
        fits = _is_number(value) and (type(template) is float or type(value) is int) and (template < 0 or value >= 0)
        return None if fits else f"must be {'an integer' if type(template) is int else 'a number'}"
    return None if value == template else f"must be {template!r}"


def like_problems(value: Any, template: Any, where: str, optional: frozenset[str] = frozenset()) -> list[str]:
    """How `value`, read from a file, differs in structure from `template`, what this code itself writes there:
    mappings with the same keys (those named in `optional` may be missing: settings an older version did not
    write, which the reader fills in), sequences of the same length, tensors of the same shape and dtype, a
    number (an integer where the template's is one, >= 0 where it is), a boolean, the same string; a None in the
    template stands for an optional setting (None, a boolean or a number)."""
    if type(template) in MAPPINGS:
        if type(value) not in MAPPINGS:
            return [f"{where} is a {type(value).__name__}, not a mapping"]
        problems = [f"{where}.{key} is missing" for key in template if key not in value and key not in optional]
        problems += [f"{where}.{key} is not one of its keys" for key in value if key not in template]
        nested = ((value[k], template[k], f"{where}.{k}") for k in template if k in value)
        return problems + [p for v, t, w in nested for p in like_problems(v, t, w, optional)]
    if type(template) in (list, tuple):
        if type(value) not in (list, tuple) or len(value) != len(template):
            return [f"{where} must be a sequence of {len(template)} items"]
        nested = ((v, t, f"{where}.{i}") for i, (v, t) in enumerate(zip(value, template, strict=True)))
        return [p for v, t, w in nested for p in like_problems(v, t, w, optional)]
    problem = _leaf_problem(value, template)
    return [f"{where} {problem}"] if problem else []


def _count_problem(value: Any) -> str | None:
    """An optimizer's step count: an int or float, or a 0-dim floating-point tensor (as torch keeps it: an integer
    one would wrap around or fail in the update), in [0, 2**53]."""
    if type(value) in TENSORS:
        if value.dim() != 0 or not value.dtype.is_floating_point:
            return "must be a number (a 0-dim floating-point tensor)"
        value = value.item()
    fits = type(value) in (int, float) and 0 <= value <= 2**53  # NaN fails the comparison
    return None if fits else "must be a count in [0, 2**53]"


def _value_problem(value: Any, param: torch.Tensor, name: str, moment: bool) -> str | None:
    """One value of a parameter's optimizer state: a moment (Adam's exp_avg, ...) is a finite tensor of the
    parameter's shape and dtype (a longer one would broadcast; NaN, or a float64 1e300 that is inf once cast,
    would reach the weights), a second moment (`*_sq`) is >= 0 (its square root is taken), anything else (a step
    count) a count or a tensor of that shape."""
    shape = tuple(param.shape)
    if moment or (type(value) in TENSORS and value.dim() > 0):
        if not (type(value) in TENSORS and tuple(value.shape) == shape and value.dtype == param.dtype):
            return f"must be a {param.dtype} tensor of its parameter's shape {shape}"
        if not bool(torch.isfinite(value).all()) or (name.endswith("_sq") and bool((value < 0).any())):
            return "must hold finite values" + (", none negative" if name.endswith("_sq") else "")
        return None
    return _count_problem(value)


def _param_state_problems(state: Any, params: list[torch.Tensor], required: set[str], where: str) -> list[str]:
    """Each parameter's optimizer state: the same keys for every parameter, `required` among them, and values
    that fit the parameter (`_value_problem`)."""
    if type(state) not in MAPPINGS:
        return [f"{where} must be a mapping of parameter indices to their states"]
    problems = []
    keys = {frozenset(entry) for entry in state.values() if type(entry) in MAPPINGS}
    if len(keys) > 1 or any(not key >= required for key in keys):
        problems.append(f"{where}: every parameter's state must hold the same keys, {sorted(required)} among them")
    for index, entry in state.items():
        if type(index) is not int or not 0 <= index < len(params) or type(entry) not in MAPPINGS:
            problems.append(f"{where}.{index} is not the state of one of the {len(params)} parameters")
            continue
        for name, value in entry.items():
            problem = _value_problem(value, params[index], str(name), name in required - {"step"})
            if problem:
                problems.append(f"{where}.{index}.{name} {problem}")
    return problems


def optimizer_state_problems(saved: Any, fresh: torch.optim.Optimizer, where: str) -> list[str]:
    """How `saved`, an optimizer's state read from a file, differs from what `fresh`, the optimizer it is to be
    loaded into, would save: its groups' settings and parameters, and each parameter's state."""
    if type(saved) not in MAPPINGS:
        return [f"{where} must be an optimizer's state (a mapping)"]
    template = fresh.state_dict()
    problems = like_problems(saved.get("param_groups"), template["param_groups"], f"{where}.param_groups", DEFAULTED)
    if problems:
        return problems
    for index, (group, own) in enumerate(zip(saved["param_groups"], template["param_groups"], strict=True)):
        if group["params"] != own["params"]:
            problems.append(f"{where}.param_groups.{index}.params must be {own['params']}")
        problems += [
            f"{where}.param_groups.{index}.{name} is {group.get(name, False)}, but this run's optimizer has {value}"
            for name, value in own.items()
            if type(value) is bool and name not in DEVICE_FLAGS and group.get(name, False) != value
        ]
    params = [p for group in fresh.param_groups for p in group["params"]]
    required = ADAM_STATE if isinstance(fresh, torch.optim.Adam) else set()
    return problems + _param_state_problems(saved.get("state"), params, required, f"{where}.state")
