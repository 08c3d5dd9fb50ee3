"""Weights & Biases without an account: offline (files in the run directory, `wandb sync` later) unless
the user is logged in or sets WANDB_MODE."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(offline: bool | None = None, **kwargs) -> WandbLogger:
    """A `WandbLogger`; `offline=None` picks offline mode unless WANDB_MODE is set or the user is logged in."""
    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    return WandbLogger(offline=offline, **kwargs)
