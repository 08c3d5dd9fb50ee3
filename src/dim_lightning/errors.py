"""User-facing errors: one paragraph that names the problem and the fix, then a non-zero exit.

Code anywhere in the package raises `DIMError` for bad input or an impossible setting. The command-line
entry points catch it (also when Hydra wrapped it while instantiating a config) and print only the message,
so users see the fix, not a traceback wall.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_USAGE = 2


class DIMError(ValueError):
    """Bad input or configuration; the message says what is wrong and how to fix it."""


def find_dim_error(error: BaseException | None) -> DIMError | None:
    """The first `DIMError` in an exception's cause/context chain, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, DIMError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def user_errors_exit(program: str) -> Iterator[None]:
    """Turn a `DIMError` raised inside the block into a one-paragraph message and exit code 2."""
    try:
        yield
    except Exception as error:
        dim_error = find_dim_error(error)
        if dim_error is None:
            raise
        message = f"{program}: error: {dim_error}"
        print(message, file=sys.stderr)
        _to_log_files(message)
        sys.exit(EXIT_USAGE)


def _to_log_files(message: str) -> None:
    """`message` into the log files the root logger writes (a run's train.log), not again on the console."""
    record = logging.LogRecord("dim_lightning", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def require(condition: bool, message: str | Callable[[], str]) -> None:
    """Raise `DIMError(message)` unless `condition` holds."""
    if not condition:
        raise DIMError(message() if callable(message) else message)
