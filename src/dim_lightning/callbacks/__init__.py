"""Callbacks that keep long runs alive (step, epoch and preemption checkpoints, the non-finite loss guard, resumable
epoch means), debug faults, and the training throughput monitor."""

from dim_lightning.callbacks.epoch_means import ResumableEpochMeans
from dim_lightning.callbacks.faults import InjectNonFinite, SignalAtStep
from dim_lightning.callbacks.last_checkpoint import EpochCheckpoint, StepCheckpoint
from dim_lightning.callbacks.nonfinite import NonFiniteGuard, TrainingDiverged
from dim_lightning.callbacks.preemption import Preempted, PreemptionCheckpoint
from dim_lightning.callbacks.throughput import ThroughputMonitor

__all__ = [
    "EpochCheckpoint",
    "InjectNonFinite",
    "NonFiniteGuard",
    "Preempted",
    "PreemptionCheckpoint",
    "ResumableEpochMeans",
    "SignalAtStep",
    "StepCheckpoint",
    "ThroughputMonitor",
    "TrainingDiverged",
]
