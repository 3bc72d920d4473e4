"""The one key confirmer: check → re-check → record, shared by every validator path.

Why one: the stream consumer, the full scan, the window scan and `validate --key` all believe a difference only
when it survives `rechecks` re-checks (a replica catching up, a transaction in flight), and all must make a
verdict durable before they let go of the key (an offset commit, a resume point). Four copies of that loop
drifted (which spelling of a key is reported, which counters count re-checks); this is the loop once.

Stable API (one confirmer per pair and per pair of connections):

    c = KeyConfirmer.from_settings(settings, pair, sides, record, origin="window_scan")
    c.check(keys)      # first check now (+ due re-checks); mismatches scheduled, the rest recorded -> verdicts
    c.poll()           # re-check the keys that are due (never blocks)
    c.drain()          # block until every scheduled key is confirmed or found consistent
    c.pending(pk), c.forget(pk), len(c), c.next_due()   # the re-check schedule (see validate/confirm.py)
    c.confirmed, c.diffs, c.keys_checked                 # what it found (bounded list, exact counts)

- `sides()` returns (source connection, target connection); it is called for every check, so a caller that
  reconnects after an error (the consumer) or opens lazily (the full scan) hands out its current ones.
- `record(verdicts)` makes a batch durable (the ledger via `ledger_recorder`, a scan store, ...); it gets the
  consistent and the confirmed verdicts of one check together and is not called with an empty batch. When it
  raises, the batch's keys are no longer scheduled: the caller still holds them and checks them again.
- `on_done(consistent, confirmed)` runs after `record` returned: the caller lets go of those keys.
- `source_spelling`: report a key under the source row's spelling, and a row met under two spellings once
  (scans meet such a row from both sides); the consumer keeps the spelling of the message it holds.
- Time: `clock` (monotonic seconds) schedules re-checks, `sleep` waits in `drain`; both injectable.

`confirm_keys(settings, pair, keys)` is the one-shot use (`validate --key`): connect, check, drain, record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.model.keys import pk_string
from cdc_repair.model.rules import source_spelled
from cdc_repair.model.verdict import Verdict
from cdc_repair.state import ledger
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate.check import check
from cdc_repair.validate.confirm import Rechecks, RespelledOnce

MAX_REPORTED = 100_000  # verdicts kept for a report (without row images); counts are exact beyond it

Key = tuple[Any, ...]
Sides = Callable[[], tuple[mysql.Connection, mysql.Connection]]
Record = Callable[[list[Verdict]], None]
OnDone = Callable[[list[Verdict], list[Verdict]], None]


def ledger_recorder(engine: StateEngine, detected_by: str) -> Record:
    """`record` that writes the verdicts to the ledger (mismatches upserted, consistent keys resolved)."""
    def record(verdicts: list[Verdict]) -> None:
        ledger.record_verdicts(engine, verdicts, detected_by)
    return record


class KeyConfirmer:
    """Check keys of one pair in batches, re-check mismatches on a schedule, record what is settled."""

    def __init__(self, pair: PairConfig, sides: Sides, record: Record, *, origin: str, rechecks: int,
                 recheck_delay_s: float, batch_size: int, source_spelling: bool = True,
                 keep: int = MAX_REPORTED, on_done: OnDone | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.pair, self.origin = pair, origin
        self._sides, self._record, self._on_done = sides, record, on_done
        self.batch_size, self.keep = batch_size, keep
        self._schedule = Rechecks(rechecks, recheck_delay_s)
        self._respelled = RespelledOnce(pair) if source_spelling else None
        self._clock, self._sleep = clock, sleep
        self.confirmed: list[Verdict] = []  # at most `keep`, without row images
        self.diffs: dict[str, int] = {}  # confirmed mismatches by kind, exact
        self.keys_checked = 0  # verdicts read, re-checks included

    @classmethod
    def from_settings(cls, settings: Settings, pair: PairConfig, sides: Sides, record: Record, *, origin: str,
                      **options: Any) -> KeyConfirmer:
        """The validator settings' `rechecks`, `recheck_delay_s` and `batch_max_keys`."""
        v = settings.validator
        return cls(pair, sides, record, origin=origin, rechecks=v.rechecks, recheck_delay_s=v.recheck_delay_s,
                   batch_size=v.batch_max_keys, **options)

    # -- the schedule

    def __len__(self) -> int:
        return len(self._schedule)

    def pending(self, pk: str) -> bool:
        """Is the key awaiting a re-check?"""
        return self._schedule.pending(self.pair.name, pk)

    def forget(self, pk: str) -> None:
        """Drop a scheduled key (a newer change of it arrived: the caller starts it over)."""
        self._schedule.forget(self.pair.name, pk)

    def next_due(self) -> float | None:
        """When the next re-check is due (on `clock`), None when nothing is scheduled."""
        return self._schedule.next_due()

    # -- checking

    def check(self, keys: Sequence[Key]) -> list[Verdict]:
        """First check of `keys`, in batches, each followed by the re-checks due by then (a long list of keys
        never holds them back); returns every verdict of the first checks (as read, before respelling)."""
        out: list[Verdict] = []
        for start in range(0, len(keys), self.batch_size):
            verdicts = self._read(keys[start:start + self.batch_size])
            self._settle(verdicts, self._schedule.add(verdicts, self._clock()))
            out += verdicts
            self.poll()
        return out

    def poll(self) -> None:
        """Re-check the scheduled keys that are due now."""
        due = self._schedule.due(self._clock()).get(self.pair.name, [])
        for start in range(0, len(due), self.batch_size):
            verdicts = self._read(due[start:start + self.batch_size])
            self._settle(verdicts, self._schedule.feed(verdicts, self._clock()))

    def drain(self) -> None:
        """Re-check until nothing is scheduled (sleeps until each next re-check is due)."""
        while len(self._schedule):
            nxt = self._schedule.next_due()
            if nxt is not None:
                self._sleep(max(0.0, nxt - self._clock()))
            self.poll()

    def _read(self, keys: Sequence[Key]) -> list[Verdict]:
        src, tgt = self._sides()
        verdicts = check(self.pair, keys, src, tgt, batch_size=self.batch_size)
        self.keys_checked += len(verdicts)
        metrics.KEYS_CHECKED.labels(self.pair.name, self.origin).inc(len(verdicts))
        for v in verdicts:
            metrics.VERDICTS.labels(self.pair.name, v.kind).inc()
        return verdicts

    def _settle(self, verdicts: Iterable[Verdict], confirmed: list[Verdict]) -> None:
        consistent = [v for v in verdicts if not v.is_mismatch]
        if self._respelled is not None:
            consistent = [source_spelled(self.pair, v) for v in consistent]
            confirmed = self._respelled.once([source_spelled(self.pair, v) for v in confirmed])
        if consistent or confirmed:
            self._record([*consistent, *confirmed])
        for v in confirmed:
            metrics.CONFIRMED.labels(self.pair.name, v.kind).inc()
            self.diffs[v.kind] = self.diffs.get(v.kind, 0) + 1
            if len(self.confirmed) < self.keep:
                self.confirmed.append(replace(v, source=None, target=None))
        if self._on_done is not None:
            self._on_done(consistent, confirmed)


def confirm_keys(settings: Settings, pair: PairConfig, keys: Sequence[Key], *, engine: StateEngine | None = None,
                 detected_by: str = "cli") -> tuple[list[Verdict], int]:
    """Check given keys now, re-check until settled, record: (confirmed mismatches, distinct keys asked)."""
    eng = engine or state_engine(settings.state.dsn)
    src = mysql.connect(settings.server_dsn(pair.source.server))
    tgt = mysql.connect(settings.server_dsn(pair.target.server))
    try:
        confirmer = KeyConfirmer.from_settings(settings, pair, lambda: (src, tgt), ledger_recorder(eng, detected_by),
                                               origin=detected_by)
        confirmer.check(keys)
        confirmer.drain()
        return confirmer.confirmed, len({pk_string(k) for k in keys})
    finally:
        src.close()
        tgt.close()
        if engine is None:
            eng.dispose()
