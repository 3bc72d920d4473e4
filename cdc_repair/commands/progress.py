"""Progress of long CLI runs (full scans, `diff`, repairs) on stderr: a live bar on a terminal, plain lines
otherwise, so a CI log or a `| tee` shows progress without escape codes.

Shared by every command so they look alike; rich draws the bar (rate and ETA included).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import click

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)
PLAIN_EVERY_S = 5.0


@contextlib.contextmanager
def progress_display(unit: str = "rows", *, enabled: bool = True) -> Iterator[ProgressFn | None]:
    """A progress callback for the duration of the block (None when disabled)."""
    if not enabled:
        yield None
    elif sys.stderr.isatty():
        with _bar(unit) as fn:
            yield fn
    else:
        lines = _PlainLines(unit)
        yield lines
        lines.finish()


@contextlib.contextmanager
def _bar(unit: str) -> Iterator[ProgressFn]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    tasks: dict[str, TaskID] = {}
    rate = TextColumn("{task.fields[rate]}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TaskProgressColumn(), rate, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=max(total, done, 1), rate="")
            task_id = tasks[label]
            speed = bar.tasks[task_id].speed
            bar.update(task_id, completed=done, total=max(total, done, 1),
                       rate=f"{speed:,.0f} {unit}/s" if speed else "")
        yield update


class _PlainLines:
    """One line per label at most every PLAIN_EVERY_S seconds: done/total, rate, ETA."""

    def __init__(self, unit: str, every_s: float = PLAIN_EVERY_S) -> None:
        self.unit = unit
        self.every_s = every_s
        self._started: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._latest: dict[str, tuple[int, int, float]] = {}  # label -> (done, total, when)
        self._shown: dict[str, int] = {}  # label -> the count of its last printed line

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        started = self._started.setdefault(label, now)
        self._latest[label] = (done, total, now)
        if now - self._last.get(label, 0.0) < self.every_s and done < total:
            return
        self._last[label] = now
        self._shown[label] = done
        click.echo(progress_line(label, done, total, now - started, self.unit), err=True)

    def finish(self) -> None:
        """The last count of each label, once the work is over: an estimate above the real total (the full
        scan's row estimate) would otherwise leave a stale `33%` as the last line."""
        for label, (done, _total, at) in self._latest.items():
            if self._shown.get(label) != done:
                click.echo(progress_line(label, done, done, at - self._started[label], self.unit), err=True)


def progress_line(label: str, done: int, total: int, elapsed_s: float, unit: str = "rows") -> str:
    """`label: 1,200/10,000 rows (12%), 3,400 rows/s, ETA 3s` (pure, for the plain display and its test)."""
    total = max(total, done)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    share = f" ({100 * done / total:.0f}%)" if total else ""
    eta = f", ETA {max(0.0, (total - done) / rate):.0f}s" if rate > 0 and total > done else ""
    return f"{label}: {done:,}/{total:,} {unit}{share}, {rate:,.0f} {unit}/s{eta}"
