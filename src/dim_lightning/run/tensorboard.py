"""`logger=tensorboard`: Lightning's TensorBoard logger, event files under <run dir>/tensorboard/, with a clear
error when no TensorBoard writer is installed (it is the optional extra `dim-lightning[tensorboard]`)."""

from __future__ import annotations

import importlib.util

from pytorch_lightning.loggers import TensorBoardLogger

from dim_lightning.errors import require


def tensorboard_logger(**kwargs) -> TensorBoardLogger:
    """A `TensorBoardLogger(**kwargs)`, or a `DIMError` naming the package to install."""
    require(
        any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX")),
        "logger=tensorboard needs a TensorBoard writer: pip install 'dim-lightning[tensorboard]' (tensorboardX) or "
        "pip install tensorboard; or pick logger=csv or logger=wandb",
    )
    return TensorBoardLogger(**kwargs)
