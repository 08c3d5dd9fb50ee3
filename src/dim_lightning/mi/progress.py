"""Progress of a long MI estimate on stderr: a live bar on a terminal, or a plain line every few seconds
elsewhere (a log file, a pipe), so `python -m dim_lightning.mi` is never silent for minutes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Report(Protocol):
    def __call__(self, done: int, note: str = "") -> None: ...


def _quiet(done: int, note: str = "") -> None:
    del done, note


@contextmanager
def progress_report(description: str, total: int, show: bool | None, every_s: float = 2.0) -> Iterator[Report]:
    """A `report(done, note)` callable for a loop of `total` steps. `show`: True always reports (a bar on a
    terminal, else a line at most every `every_s` seconds and one at the end), False never, None only on a
    terminal."""
    console = Console(stderr=True)
    if show is False or (show is None and not console.is_terminal):
        yield _quiet
        return
    if console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, TextColumn("{task.fields[note]}"), console=console, transient=True) as bar:
            task = bar.add_task(description, total=total, note="")
            yield lambda done, note="": bar.update(task, completed=done, note=note)
        return
    start = last = time.perf_counter()

    def line(done: int, note: str = "") -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done >= total:
            last = now
            print(f"{description}: {done}/{total} {note} ({now - start:.1f} s)", file=sys.stderr, flush=True)

    yield line
