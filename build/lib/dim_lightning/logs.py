"""The run's log lines in the run directory's `train.log`.

Hydra's job logging gives the root logger a console handler and a file handler (<run dir>/<job name>.log).
Lightning, imported before Hydra configured logging, gave its own loggers a private console handler and
stopped them from propagating, so its lines (checkpoint restored, signals, epochs) never reached the file.
`route_lightning_logs` undoes that once the root logger has handlers, and routes Python warnings (Lightning's
`rank_zero_warn`) through logging as well.
"""

from __future__ import annotations

import logging

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


def route_lightning_logs() -> None:
    """Send Lightning's loggers and Python warnings to the root logger's handlers (Hydra's console and
    train.log); without configured root handlers (a plain library call) nothing changes."""
    if not logging.getLogger().hasHandlers():
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own console handler, not a file handler
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)
