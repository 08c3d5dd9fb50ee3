"""The run's log lines in the run directory's `train.log`.

Hydra's job logging gives the root logger a console handler and a file handler (<run dir>/<job name>.log).
Lightning, imported before Hydra configured logging, gave its own loggers a private console handler and
stopped them from propagating, so its lines (checkpoint restored, signals, epochs) never reached the file.
`route_lightning_logs` undoes that once the root logger has handlers, and routes Python warnings (Lightning's
`rank_zero_warn`) through logging as well.

`quiet_known_noise` is the one place where log lines and warnings are silenced: only those that are known and
that a user cannot act on, each with the reason. Everything else (a too-large log interval, a suspicious
config) still reaches the console and train.log.
"""

from __future__ import annotations

import logging
import re
import warnings

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")

# (logger, message fragment): INFO lines Lightning logs on every run.
KNOWN_NOISY_LINES = (
    # An advertisement for Lightning's hosted logger, printed when a Trainer is built; nothing about this run.
    ("pytorch_lightning.utilities.rank_zero", "try installing [litlogger]"),
    # Printed on every checkpoint save: Lightning's `weights_only` there chooses whether a save holds the
    # weights only (ours hold what a resume needs), not how a file is loaded. It reads like a loading-safety
    # warning; loading here uses weights_only=True unless trust_checkpoint=true (dim_lightning.run.checkpoints).
    ("pytorch_lightning.trainer.connectors.checkpoint_connector", "`weights_only` was not set, defaulting to"),
    # Lightning says it did not add its default model summary, because the run has its own (callbacks.model_summary).
    ("pytorch_lightning.utilities.rank_zero", "Trainer already configured with model summary callbacks"),
)
# Warning message fragments (matched from the start of the message).
KNOWN_NOISY_WARNINGS = (
    # torch >= 2.10 deprecates LeafSpec and Lightning 2.6's own pytree helper still checks for it, once per
    # loop; only a Lightning release changes it.
    "`isinstance(treespec, LeafSpec)` is deprecated",
    # Lightning asks for more DataLoader workers when a loader has fewer than 2 on a bigger machine. Ours fetch
    # a whole batch with one index operation from uint8 arrays in memory (digits and synthetic use 0 on
    # purpose); the file-backed data sets default to min(4, CPU cores) (data.num_workers: null).
    "The 'train_dataloader' does not have many workers",
    "The 'val_dataloader' does not have many workers",
    # torch 2.13 deprecates DDP's broadcast_buffers for forward_sync_buffers, whose False still syncs buffers when
    # DDP wraps the module; the module's per-rank buffers need broadcast_buffers=False, as torch's warning itself
    # advises until its init_sync_buffers exists (run/distributed.py). Printed once per rank.
    "`broadcast_buffers` is deprecated",
    # Lightning's all_gather with gradients (how the negatives of the global batch are gathered under DDP) calls
    # torch's deprecated torch.distributed.nn.functional.all_gather; only a Lightning release changes it.
    "torch.distributed.nn.functional.all_gather is deprecated",
    # An epoch shorter than trainer.log_every_n_steps (a small image folder): the per-step train/* lines are not
    # logged in it, but the epoch means of every train/* metric are (callbacks.epoch_means), so nothing is lost.
    "The number of training batches",
)


class _DropMessages(logging.Filter):
    """Drops a logger's records whose message contains `fragment`."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


class _NoTrailingBlankLine(logging.Filter):
    """A message that ends in a newline is a blank line in the log: a warning routed through logging (what
    `warnings.formatwarning` adds) and Lightning's DDP banner end so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = record.msg.rstrip()
        return True


def quiet_known_noise() -> None:
    """Silence `KNOWN_NOISY_LINES` and `KNOWN_NOISY_WARNINGS` (idempotent)."""
    for name, fragment in KNOWN_NOISY_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.fragment == fragment for f in logger.filters):
            logger.addFilter(_DropMessages(fragment))
    for fragment in KNOWN_NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(fragment))


def route_lightning_logs() -> None:
    """Send Lightning's loggers and Python warnings to the root logger's handlers (Hydra's console and
    train.log); without configured root handlers (a plain library call) only the known noise is silenced."""
    quiet_known_noise()
    if not logging.getLogger().hasHandlers():
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own console handler, not a file handler
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:  # Hydra's console and train.log
        if not any(isinstance(f, _NoTrailingBlankLine) for f in handler.filters):
            handler.addFilter(_NoTrailingBlankLine())
