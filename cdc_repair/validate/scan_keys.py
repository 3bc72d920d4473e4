"""A full scan's differing keys, from the chunk that found them to a verdict, and the resume point they hold back.

Why its own piece: the chunk loop only says "these keys differ in the chunk after `lower`"; this batches their
first checks (every WORK_EVERY_S, or `batch_max_keys` at once), runs the due re-checks between chunks through
the shared `KeyConfirmer`, and knows the oldest chunk that still has a key without a verdict, so a saved resume
point never passes a difference found but not yet confirmed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.model.keys import pk_string
from cdc_repair.model.verdict import Verdict

if TYPE_CHECKING:  # imports the state package (SQLAlchemy), which a scan loads in the background
    from cdc_repair.validate.confirmer import KeyConfirmer

WORK_EVERY_S = 0.25  # batch first checks and re-checks of differing rows

Key = tuple[Any, ...]
Frontier = tuple[Key | None, int | None, int | None]  # resume key, rows and chunks counted up to it


class ScanKeys:
    def __init__(self, settings: Settings, pair: PairConfig, sides: Callable[[], tuple[mysql.Connection,
                 mysql.Connection]], record: Callable[[list[Verdict]], None]) -> None:
        self.settings, self.pair = settings, pair
        self._sides, self._record = sides, record
        self.confirmer: KeyConfirmer | None = None  # created with the first differing keys
        self.chunks: list[tuple[Key | None, set[str], int, int]] = []  # (lower key, pks, rows, chunks before)
        self.queue: list[Key] = []  # differing keys awaiting their first check
        self._last_work = time.monotonic()

    @property
    def diffs(self) -> dict[str, int]:
        return self.confirmer.diffs if self.confirmer is not None else {}

    def found(self, keys: Sequence[Key], chunk_lower: Key | None, before: tuple[int, int]) -> None:
        """A dirty chunk's differing keys (`before`: rows and chunks counted before that chunk)."""
        if not keys:
            return
        self.chunks.append((chunk_lower, {pk_string(k) for k in keys}, *before))
        self.queue.extend(keys)
        if len(self.queue) >= self.settings.validator.batch_max_keys:
            self.flush()

    def flush(self) -> None:
        """First checks of the queued keys, now."""
        keys, self.queue = self.queue, []
        self._last_work = time.monotonic()
        if keys:
            self._confirm().check(keys)
            self._prune()

    def work(self) -> None:
        """First checks and due re-checks, batched: at most every WORK_EVERY_S."""
        if time.monotonic() - self._last_work < WORK_EVERY_S:
            return
        self.flush()
        if self.confirmer is not None:
            self.confirmer.poll()
        self._prune()

    def drain(self) -> None:
        """Check what is queued and re-check until every key has its verdict."""
        self.flush()
        if self.confirmer is not None:
            self.confirmer.drain()
        self._prune()

    def frontier(self, upper: Key | None) -> Frontier:
        """Before the first chunk that still has keys awaiting a verdict, else `upper`."""
        if self.chunks:
            lower, _pks, rows, chunks = self.chunks[0]
            return lower, rows, chunks
        return upper, None, None

    def _prune(self) -> None:
        queued = {pk_string(k) for k in self.queue}
        confirmer = self.confirmer

        def waiting(pk: str) -> bool:
            return pk in queued or (confirmer is not None and confirmer.pending(pk))

        kept = [(lo, {pk for pk in pks if waiting(pk)}, rows, n) for lo, pks, rows, n in self.chunks]
        self.chunks = [entry for entry in kept if entry[1]]

    def _confirm(self) -> KeyConfirmer:
        """The confirmer, created with the first differing keys (its module imports the state package); keys
        are checked on the sides' drill-down connections."""
        if self.confirmer is None:
            from cdc_repair.validate.confirmer import KeyConfirmer

            self.confirmer = KeyConfirmer.from_settings(self.settings, self.pair, self._sides, self._record,
                                                        origin="full_scan")
        return self.confirmer
