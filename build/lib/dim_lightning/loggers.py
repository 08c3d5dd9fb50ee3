"""Weights & Biases without an account: offline (files in the run directory, `wandb sync` later) unless
the user is logged in or sets WANDB_MODE. Resuming from a checkpoint continues the same W&B run: the run id
is saved in every checkpoint and read back from `resume_from`."""

from __future__ import annotations

import netrc
import os
from typing import Any
from urllib.parse import urlparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

RUN_ID_KEY = "wandb_run_id"


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def saved_run_id(checkpoint_path: str) -> str | None:
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False, mmap=True)
    return checkpoint.get(RUN_ID_KEY)


def wandb_logger(offline: bool | None = None, resume_from: str | None = None, **kwargs) -> WandbLogger:
    """A `WandbLogger`. `offline=None`: offline unless WANDB_MODE is set or the user is logged in.
    `resume_from`: a checkpoint whose W&B run this run continues."""
    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    if resume_from is not None and kwargs.get("id") is None:
        kwargs["id"] = saved_run_id(resume_from)
    return WandbLogger(offline=offline, resume="allow", **kwargs)


class SaveWandbRunId(pl.Callback):
    """Store the W&B run id in each checkpoint, so `ckpt_path=...` resumes the same W&B run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]):
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[RUN_ID_KEY] = logger.version
