"""One config key's description: its dotted name, what is valid (a `Check`) and a one-line meaning."""

from __future__ import annotations

from dataclasses import dataclass

from dim_lightning.config.checks import Check


@dataclass(frozen=True)
class Key:
    name: str
    check: Check
    meaning: str
