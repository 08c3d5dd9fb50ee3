"""What a config value may be: small checks that both test a value and say what is valid. The same `valid` text
is the error message ("model.lr=0 must be a number in (0, inf]") and the docs' "valid values" column."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig


@dataclass(frozen=True)
class Check:
    """`valid` says what is valid ("an integer >= 1"); `test` tells whether a value is; `explain`, where given,
    words the problem of a bad value itself (default: "must be <valid>")."""

    valid: str
    test: Callable[[Any], bool]
    explain: Callable[[Any], str] | None = None

    def problem(self, value: Any) -> str | None:
        if self.test(value):
            return None
        return self.explain(value) if self.explain else f"must be {self.valid}"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def show(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(show, value)) + "]"
    if isinstance(value, dict):
        return str(value)
    return {None: "null", True: "true", False: "false"}.get(value, str(value)) if not is_number(value) else str(value)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A real number in [low, high] (open ends where asked)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def test(value: Any) -> bool:
        ok = is_number(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        return ok and (high is None or (value < high if high_open else value <= high))

    return Check(f"a number in {span}", test)


def integer(low: int, high: int | None = None) -> Check:
    """An integer >= low (and <= high: a bound a real run never needs to exceed, so that a config from someone
    else cannot ask for a model or data set too large to build)."""
    if high is None:
        return Check(f"an integer >= {low}", lambda value: is_int(value) and value >= low)
    return Check(f"an integer in [{low}, {high}]", lambda value: is_int(value) and low <= value <= high)


boolean = Check("true or false", lambda value: isinstance(value, bool))
text = Check("a string", lambda value: isinstance(value, str))


def one_of(choices: Iterable[Any]) -> Check:
    choices = tuple(choices)
    shown = ", ".join(dict.fromkeys(map(str, choices)))  # 16 and "16" are both valid, shown once
    return Check(f"one of {shown}", lambda value: value in choices)


def optional(check: Check) -> Check:
    return Check(f"null or {check.valid}", lambda value: value is None or check.test(value), check.explain)


def any_of(*checks: Check) -> Check:
    return Check(" or ".join(c.valid for c in checks), lambda value: any(c.test(value) for c in checks))


def list_of(check: Check, allow_empty: bool = False) -> Check:
    shape = "a list" if allow_empty else "a non-empty list"

    def test(value: Any) -> bool:
        is_list = isinstance(value, list | tuple | ListConfig) and (bool(value) or allow_empty)
        return is_list and all(check.test(item) for item in value)

    return Check(f"{shape}, each item {check.valid}", test)


def containing(check: Check, item: Any, why: str) -> Check:
    """`check`, and the value (a list) holds `item`."""
    return Check(f"{check.valid}, including {item} ({why})", lambda value: check.test(value) and item in value)


def documented(valid: str) -> Check:
    """A key whose value another program checks (Hydra, a launcher plugin, Lightning): described, never refused
    here (its own check runs where it is read)."""
    return Check(valid, lambda value: True)


positive = number(0, low_open=True)
non_negative = number(0)
fraction = number(0, 1, low_open=True, high_open=True)
seed = integer(0)
path = optional(text)
target = Check("an importable class or function (dotted path)", lambda value: isinstance(value, str))
partial = Check("true (build a function with these arguments bound)", lambda value: value is True)
interpolation = documented("an interpolation (${...}) of the key it names; set that key instead")
