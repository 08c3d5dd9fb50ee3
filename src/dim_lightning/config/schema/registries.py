"""Valid choices that other modules define, imported in this one spot (the schema never re-lists them): feature
places from the evaluation, precisions, accelerators and strategies from Lightning, stop signals from the
preemption callback. A config group's options (estimators, data sets, ...) are Hydra's: conf/ files and plugins,
listed by `dim_lightning.config.compose`."""

from __future__ import annotations

import typing

from lightning_fabric.connector import _PRECISION_INPUT
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.strategies import StrategyRegistry

from dim_lightning.callbacks.preemption import STOP_SIGNALS
from dim_lightning.eval.features import PLACES

FEATURE_PLACES = tuple(PLACES)
PRECISIONS = tuple(p for literal in typing.get_args(_PRECISION_INPUT) for p in typing.get_args(literal))
ACCELERATORS = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
STRATEGIES = ("auto", *StrategyRegistry.available_strategies())
SIGNALS = tuple(s.name for s in STOP_SIGNALS)
