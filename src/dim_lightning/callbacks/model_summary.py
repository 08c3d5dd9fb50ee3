"""The model summary at the start of fit: each top-level module's class and parameter count, then the totals, as
log lines (so train.log has them too). Lightning's own table adds a FLOPs column that is all zeros unless the
LightningModule defines `example_input_array` (a DIM step's cost depends on the critic's negatives, so ours does
not): a column of zeros reads as a measurement."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.callbacks import ModelSummary as LightningModelSummary
from pytorch_lightning.utilities.model_summary.model_summary import get_human_readable_count

log = logging.getLogger(__name__)


class ModelSummary(LightningModelSummary):
    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = dict(summary_data)
        modules = ", ".join(
            f"{name} ({kind}, {params})"
            for name, kind, params in zip(columns["Name"], columns["Type"], columns["Params"], strict=True)
        )
        log.info(
            f"Model: {modules}; {get_human_readable_count(trainable_parameters)} trainable parameters of "
            f"{get_human_readable_count(total_parameters)} ({model_size:.1f} MB)"
        )
