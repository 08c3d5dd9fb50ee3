"""Where the time of a run goes: `PhaseTimer` times named phases (a context manager, or begin/end from two
callback hooks), logs a start line and an end line with the duration through Python logging (so they reach
the console and train.log), and keeps the seconds as `time/<phase>_s` entries for metrics.json / eval.json.
`progress` is the progress bar (rate and ETA) of every long evaluation phase, like the cache build's."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger(__name__)
T = TypeVar("T")


class PhaseTimer:
    """Seconds per named phase (`time/<name>_s`, summed when a phase repeats), each logged when it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: dict[str, float] = {}

    def begin(self, name: str, detail: str = "") -> None:
        log.info("%s: started%s", name, f" ({detail})" if detail else "")
        self._open[name] = time.perf_counter()

    def end(self, name: str) -> float:
        if name not in self._open:
            return 0.0
        seconds = time.perf_counter() - self._open.pop(name)
        key = f"time/{name}_s"
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        log.info("%s: done in %.1f s", name, seconds)
        return seconds

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        self.begin(name, detail)
        try:
            yield
        finally:
            self.end(name)


def rate_text(items_per_s: float | None) -> str:
    """'312.4 it/s', or '45.2 s/it' for slow items (a probe fit), or '- it/s' before the first one."""
    if not items_per_s:
        return "- it/s"
    return f"{items_per_s:,.1f} it/s" if items_per_s >= 1 else f"{1 / items_per_s:,.1f} s/it"


class RateColumn(ProgressColumn):
    """Items per second (or seconds per item when slower than one a second)."""

    def render(self, task: Task) -> Text:
        return Text(rate_text(task.finished_speed or task.speed), style="progress.data.speed")


def progress(items: Iterable[T], total: int, description: str, log_every_s: float = 30.0) -> Iterator[T]:
    """`items` with a progress bar (done/total, rate, elapsed, ETA) while they are consumed: a live bar on a
    terminal; elsewhere (a batch job's log, train.log) a log line at most every `log_every_s` seconds."""
    if not Console().is_terminal:
        yield from _logged_progress(items, total, description, log_every_s)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        yield from bar.track(items, total=total, description=description)


def _logged_progress(items: Iterable[T], total: int, description: str, every_s: float) -> Iterator[T]:
    start = last = time.perf_counter()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        if now - last >= every_s and done < total:
            last, rate = now, done / (now - start)
            log.info("%s: %d/%d, %s, ETA %.0f s", description, done, total, rate_text(rate), (total - done) / rate)
