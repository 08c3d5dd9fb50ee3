"""Valid choices that other modules define, imported in this one spot (the schema never re-lists them): feature
places from the evaluation, precisions, accelerators and strategies from Lightning, stop signals from the
preemption callback. A config group's options (estimators, data sets, ...) are Hydra's: conf/ files and plugins,
listed by `dim_lightning.config.compose`."""

from __future__ import annotations

from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.strategies import StrategyRegistry

from dim_lightning.callbacks.preemption import STOP_SIGNALS
from dim_lightning.eval.features import PLACES
from dim_lightning.run import lightning_compat

FEATURE_PLACES = tuple(PLACES)
PRECISIONS = lightning_compat.PRECISIONS
ACCELERATORS = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
STRATEGIES = ("auto", *StrategyRegistry.available_strategies())
SIGNALS = tuple(s.name for s in STOP_SIGNALS)
