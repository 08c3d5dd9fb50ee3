"""Every config key, described once: one module per config group (its keys' valid values and meanings), merged
here into `SCHEMA` (dotted key -> `Key`). Validation, docs/config.md and the README's table are derived from it;
a test fails when a composed config holds a key that has no entry."""

from __future__ import annotations

from types import ModuleType

from dim_lightning.config.schema import (
    callbacks,
    critic,
    data,
    debug,
    encoder,
    estimator,
    eval,
    hydra,
    logger,
    model,
    paths,
    prior,
    root,
    trainer,
)
from dim_lightning.config.schema.key import Key

GROUPS: tuple[ModuleType, ...] = (
    root,
    data,
    encoder,
    critic,
    estimator,
    prior,
    model,
    trainer,
    logger,
    callbacks,
    eval,
    debug,
    paths,
    hydra,
)


def _merged(groups: tuple[ModuleType, ...]) -> dict[str, Key]:
    schema: dict[str, Key] = {}
    for group in groups:
        for key in group.KEYS:
            if key.name in schema:
                raise ValueError(f"config key {key.name} is described twice (in {group.__name__} and before)")
            schema[key.name] = key
    return schema


SCHEMA: dict[str, Key] = _merged(GROUPS)
# Keys that hold further keys (model.optimizer, critic.network, ...): a value there must be a mapping (or null).
MAPPING_KEYS = {key.rsplit(".", depth)[0] for key in SCHEMA for depth in range(1, key.count(".") + 1)}
