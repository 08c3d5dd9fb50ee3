"""Callbacks that keep long runs alive: preemption checkpoints, the non-finite loss guard, and debug faults."""

from dim_lightning.callbacks.faults import InjectNonFinite, SignalAtStep
from dim_lightning.callbacks.nonfinite import NonFiniteGuard, TrainingDiverged
from dim_lightning.callbacks.preemption import Preempted, PreemptionCheckpoint

__all__ = [
    "InjectNonFinite",
    "NonFiniteGuard",
    "Preempted",
    "PreemptionCheckpoint",
    "SignalAtStep",
    "TrainingDiverged",
]
