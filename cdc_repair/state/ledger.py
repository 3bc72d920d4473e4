"""The inconsistency ledger (state table `inconsistency`): one row per (pair, key), idempotent.

Public, stable API (validator writes, repairer reads and updates):

- `record_verdicts(engine, verdicts, detected_by, *, source_events=None, event_ts=None, now=None)
  -> RecordResult` — in one transaction:
  * every mismatch verdict (missing_in_target / extra_in_target / different) is upserted: a new key is
    inserted `open`; a known key gets kind, columns, last_seen, seen_count+1 (and source_event/event_ts when
    given; an active entry's source_event keeps `first_binlog`, where the key's run of changes began, so
    compensation can revert them all) updated; a `repaired` or `resolved` entry is **re-opened** (status
    open, attempts 0, next_retry_at now); `open`, `repairing`, `failed` and `ignored` keep their status.
  * every `ok` / `not_applicable` verdict **resolves** the key's entry if it is `open` or `failed`: status
    becomes `resolved` (consistent again without a repair by us; the repairer writes `repaired` for its own
    fixes). `repairing` entries are left to the repairer.
  `source_events` / `event_ts` are keyed by canonical pk (`model/keys.py: pk_string`); an event is a
  `model/source_event.py: SourceEvent`, stored as its JSON (a mapping in that form is read as one).
- `open_entries(engine, *, pair=None, statuses=("open",), due=True, limit=1000, now=None) -> list[LedgerEntry]`
  — entries to work on; `due` keeps those whose next_retry_at is NULL or past.
- `get_entry(engine, pair, pk)`, `set_status(engine, entry_id, status, ...)` — small helpers for the repairer.
- `counts(engine) -> dict[(pair, kind, status), n]` for metrics/status.

Statuses: `model/ledger.py: LedgerStatus`. The claims of the repairer are in `state/claims.py`.
Times are naive UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError

from cdc_repair.model.ledger import (
    ACTIVE_STATUSES,
    CLOSED_STATUSES,
    RESOLVABLE_STATUSES,
    LedgerCount,
    LedgerEntry,
    LedgerStatus,
    utcnow,
)
from cdc_repair.model.oversized import bound_event
from cdc_repair.model.source_event import SourceEvent
from cdc_repair.model.verdict import MISMATCH_KINDS, Verdict
from cdc_repair.state.tables import inconsistency


@dataclass
class RecordResult:
    """What one `record_verdicts` call changed (pks per outcome)."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)


def record_verdicts(engine: Engine, verdicts: Iterable[Verdict], detected_by: str, *,
                    source_events: Mapping[str, SourceEvent | Mapping[str, Any]] | None = None,
                    event_ts: Mapping[str, float] | None = None,
                    now: dt.datetime | None = None) -> RecordResult:
    """Upsert mismatches, resolve keys found consistent; one transaction (see module docstring)."""
    verdicts = list(verdicts)
    for attempt in range(3):
        try:
            return _record(engine, verdicts, detected_by, source_events or {}, event_ts or {}, now or utcnow())
        except IntegrityError:  # a concurrent validator inserted the same new key first: retry as update
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _record(engine: Engine, verdicts: list[Verdict], detected_by: str,
            events: Mapping[str, SourceEvent | Mapping[str, Any]],
            ts: Mapping[str, float], now: dt.datetime) -> RecordResult:
    result = RecordResult()
    bad: dict[tuple[str, str], Verdict] = {}
    good: dict[str, set[str]] = {}
    alias: dict[tuple[str, str], str] = {}  # (pair, ledger pk) → the pk asked for (events/ts are keyed by it)
    for v in verdicts:
        pk = v.ledger_pk  # one entry per row, under the source's spelling
        alias.setdefault((v.pair, pk), v.pk)
        if v.kind in MISMATCH_KINDS:
            bad[(v.pair, pk)] = v
        else:
            good.setdefault(v.pair, set()).add(pk)
            bad.pop((v.pair, pk), None)
    for pair_name, good_pks in good.items():  # a later verdict for the same key wins
        good_pks -= {pk for (p, pk) in bad if p == pair_name}
    t = inconsistency
    with engine.begin() as conn:
        by_pair: dict[str, list[str]] = {}
        for pair_name, pk in bad:
            by_pair.setdefault(pair_name, []).append(pk)
        existing: dict[tuple[str, str], Any] = {}
        for pair_name, pair_pks in by_pair.items():
            for chunk in _chunks(pair_pks, 500):
                rows = conn.execute(select(t.c.id, t.c.pk, t.c.status, t.c.seen_count, t.c.source_event)
                                    .where(and_(t.c.pair == pair_name, t.c.pk.in_(chunk)))
                                    .with_for_update()).all()
                existing.update({(pair_name, r.pk): r for r in rows})
        inserts: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for (pair_name, pk), v in bad.items():
            values: dict[str, Any] = {"kind": v.kind, "columns": list(v.columns), "last_seen": now,
                                      "updated_at": now}
            asked = alias.get((pair_name, pk), pk)
            row = existing.get((pair_name, pk))
            if asked in events:  # an active entry keeps where its run of changes began (compensation reverts all)
                active = row is not None and row.status not in CLOSED_STATUSES
                merged = _merged_event(row.source_event if row is not None and active else None, events[asked])
                values["source_event"] = bound_event(merged)  # one big row never exceeds max_allowed_packet
            if asked in ts:
                values["event_ts"] = ts[asked]
            if row is None:
                inserts.append({"pair": pair_name, "pk": pk, "detected_by": detected_by, "first_seen": now,
                                "seen_count": 1, "status": LedgerStatus.OPEN, "attempts": 0, "next_retry_at": now,
                                "source_event": None, "event_ts": ts.get(asked), **values})
                result.inserted.append(pk)
                continue
            values["seen_count"] = row.seen_count + 1
            if row.status in CLOSED_STATUSES:
                values.update(status=LedgerStatus.OPEN, attempts=0, next_retry_at=now, last_error=None, claimed_by=None,
                              claimed_at=None, detected_by=detected_by, first_seen=now)
                result.reopened.append(pk)
            else:
                result.updated.append(pk)
            changes.append({"id": row.id, "pair": pair_name, "pk": pk, **values})
        _update_known(conn, changes, detected_by, now)
        if inserts:
            conn.execute(t.insert(), inserts)
        for pair_name, pk_set in good.items():
            for chunk in _chunks(sorted(pk_set), 500):
                where = and_(t.c.pair == pair_name, t.c.pk.in_(chunk), t.c.status.in_(RESOLVABLE_STATUSES))
                found = conn.execute(select(t.c.pk).where(where)).scalars().all()
                if found:
                    conn.execute(update(t).where(where).values(status=LedgerStatus.RESOLVED, next_retry_at=None,
                                                               updated_at=now))
                    result.resolved.extend(found)
    return result


def _merged_event(previous: Any, latest: SourceEvent | Mapping[str, Any]) -> Any:
    """The JSON to store: the latest event, keeping where the key's run of changes began (`previous`, the stored
    JSON of an active entry). A mapping that is no source event (a hand-written one) is stored as given."""
    event = latest if isinstance(latest, SourceEvent) else SourceEvent.from_json(latest)
    if event is None:
        return latest
    return event.following(SourceEvent.from_json(previous)).to_json()


def _update_known(conn: Connection, changes: list[dict[str, Any]], detected_by: str, now: dt.datetime) -> None:
    """Update known entries in bulk: one `INSERT … ON DUPLICATE KEY UPDATE` on their ids per set of changed
    columns and 1,000 rows (every row hits its own id, so only the listed columns change), instead of one UPDATE
    per key: a scan that finds the same 20,000 differences again costs what the first one did."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in changes:
        groups.setdefault(tuple(sorted(k for k in change if k not in ("id", "pair", "pk"))), []).append(change)
    t = inconsistency
    filler = {"kind": "", "detected_by": detected_by, "first_seen": now, "last_seen": now, "seen_count": 0,
              "status": LedgerStatus.OPEN, "attempts": 0,
              "updated_at": now}  # NOT NULL columns of the (never used) insert
    for cols, rows in groups.items():
        for start in range(0, len(rows), 1000):
            stmt = mysql_insert(t).values([{**filler, **r} for r in rows[start:start + 1000]])
            conn.execute(stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in cols}))


def _chunks(items: Sequence[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def entry_from_row(row: Any) -> LedgerEntry:
    """The ledger's one row mapper: a row of `select(inconsistency)` as a `LedgerEntry`."""
    return LedgerEntry(id=row.id, pair=row.pair, pk=row.pk, kind=row.kind, columns=tuple(row.columns or ()),
                       detected_by=row.detected_by, first_seen=row.first_seen, last_seen=row.last_seen,
                       seen_count=row.seen_count, status=LedgerStatus(row.status), attempts=row.attempts,
                       next_retry_at=row.next_retry_at, last_error=row.last_error, source_event=row.source_event,
                       event_ts=row.event_ts, repair_id=row.repair_id)


def open_entries(engine: Engine, *, pair: str | None = None, statuses: Sequence[str] = (LedgerStatus.OPEN,),
                 due: bool = True, limit: int = 1000, now: dt.datetime | None = None) -> list[LedgerEntry]:
    """Ledger entries in `statuses` (oldest retry first); `due`: next_retry_at NULL or ≤ now."""
    t = inconsistency
    q = select(t).where(t.c.status.in_(list(statuses)))
    if pair is not None:
        q = q.where(t.c.pair == pair)
    if due:
        q = q.where((t.c.next_retry_at.is_(None)) | (t.c.next_retry_at <= (now or utcnow())))
    q = q.order_by(t.c.next_retry_at, t.c.id).limit(limit)
    with engine.connect() as conn:
        return [entry_from_row(r) for r in conn.execute(q)]


def get_entry(engine: Engine, pair: str, pk: str) -> LedgerEntry | None:
    t = inconsistency
    with engine.connect() as conn:
        row = conn.execute(select(t).where(and_(t.c.pair == pair, t.c.pk == pk))).first()
    return entry_from_row(row) if row is not None else None


def set_status(engine: Engine, entry_id: int, status: str, *, last_error: str | None = None,
               next_retry_at: dt.datetime | None = None, attempts: int | None = None,
               repair_id: str | None = None) -> None:
    """Set an entry's status (and optional fields); the repairer's write path."""
    values: dict[str, Any] = {"status": status, "updated_at": utcnow(), "next_retry_at": next_retry_at}
    if last_error is not None:
        values["last_error"] = last_error
    if attempts is not None:
        values["attempts"] = attempts
    if repair_id is not None:
        values["repair_id"] = repair_id
    with engine.begin() as conn:
        conn.execute(update(inconsistency).where(inconsistency.c.id == entry_id).values(**values))


def counts(engine: Engine) -> dict[tuple[str, str, str], int]:
    """Number of entries by (pair, kind, status)."""
    t = inconsistency
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.pair, t.c.kind, t.c.status, func.count())
                            .group_by(t.c.pair, t.c.kind, t.c.status)).all()
    return {(r[0], r[1], r[2]): int(r[3]) for r in rows}



def active_counts(engine: Engine) -> list[LedgerCount]:
    """Entries not finished (`ACTIVE_STATUSES`) by (pair, kind, status), with the oldest first_seen of each."""
    t = inconsistency
    q = (select(t.c.pair, t.c.kind, t.c.status, func.count(), func.min(t.c.first_seen))
         .where(t.c.status.in_(ACTIVE_STATUSES)).group_by(t.c.pair, t.c.kind, t.c.status))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [LedgerCount(str(r[0]), str(r[1]), LedgerStatus(r[2]), int(r[3]), r[4]) for r in rows]
