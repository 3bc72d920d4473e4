"""The ledger's vocabulary as values (pure): entry statuses, the entry itself, and the clock the state tables use.

Why here: the validator writes entries, the repairer claims and closes them, status, metrics and the demo count
them. Each used to spell the statuses itself, and the copies disagreed on which are "active"; one enum below the
stages keeps them one vocabulary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cdc_repair.model.keys import parse_pk
from cdc_repair.model.source_event import SourceEvent


class LedgerStatus(StrEnum):
    """An entry's status (a str: it is stored and compared as its value)."""

    OPEN = "open"  # to repair (when next_retry_at is due)
    REPAIRING = "repairing"  # claimed by a repair run (claimed_by)
    REPAIRED = "repaired"  # consistent after a write of ours
    RESOLVED = "resolved"  # consistent again without a write of ours
    FAILED = "failed"  # parked after max attempts, or refused: a person decides
    IGNORED = "ignored"  # set by a person: never repaired


# not finished: counted as open by status, metrics and the scan report
ACTIVE_STATUSES: tuple[LedgerStatus, ...] = (LedgerStatus.OPEN, LedgerStatus.REPAIRING, LedgerStatus.FAILED)
# work the pipeline will still do by itself (a parked `failed` entry waits for a person)
IN_PROGRESS_STATUSES: tuple[LedgerStatus, ...] = (LedgerStatus.OPEN, LedgerStatus.REPAIRING)
# finished: the cleanup job deletes them once old
FINISHED_STATUSES: tuple[LedgerStatus, ...] = (LedgerStatus.REPAIRED, LedgerStatus.RESOLVED, LedgerStatus.IGNORED)
# closed by a consistent outcome: a new difference re-opens them (a rollback too)
CLOSED_STATUSES: tuple[LedgerStatus, ...] = (LedgerStatus.REPAIRED, LedgerStatus.RESOLVED)
# a consistent verdict resolves these (a `repairing` entry is left to its repairer)
RESOLVABLE_STATUSES: tuple[LedgerStatus, ...] = (LedgerStatus.OPEN, LedgerStatus.FAILED)


def utcnow() -> dt.datetime:
    """Now as the state tables store time: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row. `key` is the pk parsed back to a tuple of strings."""

    id: int
    pair: str
    pk: str
    kind: str
    columns: tuple[str, ...]
    detected_by: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    seen_count: int
    status: LedgerStatus
    attempts: int
    next_retry_at: dt.datetime | None
    last_error: str | None
    source_event: Any  # the stored JSON (model/source_event.py), see `events`
    event_ts: float | None
    repair_id: str | None

    @property
    def key(self) -> tuple[str, ...]:
        return parse_pk(self.pk)

    @property
    def events(self) -> list[SourceEvent]:
        """`source_event` (the stored JSON) as typed events: the validator's row, or each row of a whole
        FlatMessage; [] when there is none."""
        return SourceEvent.all_from_json(self.source_event)


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which entries a repair or rollback works on (an empty field matches everything)."""

    pairs: tuple[str, ...] = ()
    pks: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class LedgerCount:
    """How many entries a (pair, kind, status) has, and the oldest one's first_seen."""

    pair: str
    kind: str
    status: LedgerStatus
    count: int
    oldest_first_seen: dt.datetime | None
