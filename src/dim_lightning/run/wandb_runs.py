"""Weights & Biases without an account: offline (files in the run directory, `wandb sync` later) unless
the user is logged in or sets WANDB_MODE. Resuming from a checkpoint continues the same W&B run: the run id
is saved in every checkpoint and read back from `resume_from`."""

from __future__ import annotations

import netrc
import os
from typing import Any
from urllib.parse import urlparse

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from dim_lightning.run.checkpoints import read_checkpoint
from dim_lightning.run.lightning_compat import drop_wandb_init_argument

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


def saved_run_id(checkpoint_path: str, trust: bool = False) -> str | None:
    """The W&B run id saved in a checkpoint (read as every checkpoint is: `weights_only=True` unless `trust`)."""
    return read_checkpoint(checkpoint_path, trust=trust).get(RUN_ID_KEY)


def wandb_logger(
    offline: bool | None = None, resume_from: str | None = None, trust_checkpoint: bool = False, **kwargs
) -> WandbLogger:
    """A `WandbLogger`. `offline=None`: offline unless WANDB_MODE is set or the user is logged in.
    `resume_from`: a checkpoint whose W&B run this run continues (`trust_checkpoint` as for the resume)."""
    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    if resume_from is not None and kwargs.get("id") is None:
        kwargs["id"] = saved_run_id(resume_from, trust_checkpoint)
    return drop_wandb_init_argument(WandbLogger(offline=offline, resume="allow", **kwargs), "anonymous")


class SaveWandbRunId(pl.Callback):
    """Store the W&B run id in each checkpoint, so `ckpt_path=...` resumes the same W&B run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]):
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[RUN_ID_KEY] = logger.version
