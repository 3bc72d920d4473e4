"""Full-scan progress (state table `scan_progress`), so `validate --full --resume` skips finished chunks.

One row per (scan_id, pair). `last_key` is the canonical pk (JSON array of strings) of the upper bound of the
last finished chunk: everything at or below it is done. It is saved after every chunk, in its own short
transaction, after that chunk's confirmed verdicts are in the ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, text, update

from cdc_repair.model.ledger import ACTIVE_STATUSES, utcnow
from cdc_repair.state.tables import inconsistency, scan_finding, scan_progress

RUNNING = "running"
DONE = "done"
FAILED = "failed"


@dataclass(frozen=True)
class ScanState:
    scan_id: str
    pair: str
    status: str
    last_key: str | None
    chunks: int
    rows: int
    diffs: int
    where_clause: str | None


def start(engine: Engine, scan_id: str, pair: str, where_clause: str | None) -> None:
    """Record a new scan of `pair` (its older scans' findings go: only the newest scan can be resumed)."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(delete(scan_finding).where(scan_finding.c.pair == pair))
        conn.execute(scan_progress.insert().values(scan_id=scan_id, pair=pair, status=RUNNING, last_key=None, chunks=0,
                                                   rows=0, diffs=0, where_clause=where_clause, started_at=now,
                                                   updated_at=now))


def save(engine: Engine, scan_id: str, pair: str, *, last_key: str | None, chunks: int, rows: int,
         diffs: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(scan_progress)
                     .where(and_(scan_progress.c.scan_id == scan_id, scan_progress.c.pair == pair))
                     .values(last_key=last_key, chunks=chunks, rows=rows, diffs=diffs, updated_at=utcnow()))


def finish(engine: Engine, scan_id: str, pair: str, status: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(update(scan_progress)
                     .where(and_(scan_progress.c.scan_id == scan_id, scan_progress.c.pair == pair))
                     .values(status=status, updated_at=now, finished_at=now if status == DONE else None))


def add_findings(engine: Engine, scan_id: str, pair: str, pks: Sequence[str]) -> None:
    """Remember the keys this scan confirmed (written after their ledger entries, before the chunk's progress)."""
    if pks:
        with engine.begin() as conn:
            conn.execute(insert(scan_finding), [{"scan_id": scan_id, "pair": pair, "pk": pk} for pk in pks])


def findings(engine: Engine, scan_id: str, pair: str, limit: int) -> tuple[dict[str, int], list[Finding]]:
    """The differences a scan found over all its runs that are still active in the ledger: (count by kind,
    up to `limit` of them in ledger order). Keys found twice (the part re-read after a resume) count once."""
    f, i = scan_finding, inconsistency
    found = (select(f.c.pk).where(and_(f.c.scan_id == scan_id, f.c.pair == pair)).distinct().subquery())
    live = and_(i.c.pair == pair, i.c.pk == found.c.pk, i.c.status.in_(ACTIVE_STATUSES))
    with engine.connect() as conn:
        counts = {str(k): int(n) for k, n in conn.execute(
            select(i.c.kind, func.count()).select_from(found.join(i, live)).group_by(i.c.kind)).all()}
        rows = conn.execute(select(i.c.pk, i.c.kind, i.c.columns).select_from(found.join(i, live))
                            .order_by(i.c.id).limit(limit)).all()
    return counts, [Finding(str(r.pk), str(r.kind), tuple(r.columns or ())) for r in rows]


@dataclass(frozen=True)
class Finding:
    pk: str
    kind: str
    columns: tuple[str, ...]


def resumable(engine: Engine, pair: str) -> ScanState | None:
    """The latest unfinished (running or failed) scan of `pair`, if its newest scan is not done."""
    t = scan_progress
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.pair == pair).order_by(t.c.started_at.desc(), t.c.id.desc())
                           .limit(1)).first()
    if row is None or row.status == DONE:
        return None
    return ScanState(row.scan_id, row.pair, row.status, row.last_key, row.chunks, row.rows, row.diffs,
                     row.where_clause)


def get(engine: Engine, scan_id: str, pair: str) -> ScanState | None:
    t = scan_progress
    with engine.connect() as conn:
        row = conn.execute(select(t).where(and_(t.c.scan_id == scan_id, t.c.pair == pair))).first()
    if row is None:
        return None
    return ScanState(row.scan_id, row.pair, row.status, row.last_key, row.chunks, row.rows, row.diffs,
                     row.where_clause)


@contextlib.contextmanager
def scan_lock(engine: Engine, pair: str) -> Iterator[bool]:
    """Hold the state server's named lock for a full scan of `pair` (True), or yield False when another process
    holds it. The lock lives as long as this connection: a killed scanner releases it, so `--resume` works at once."""
    name = f"cdc-repair-scan:{pair}"[:64]
    with engine.connect() as conn:
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})


def set_total(engine: Engine, scan_id: str, pair: str, rows_total: int | None) -> None:
    """Record the scan's row estimate (the larger side's table statistics), so status can show done of total."""
    with engine.begin() as conn:
        conn.execute(update(scan_progress)
                     .where(and_(scan_progress.c.scan_id == scan_id, scan_progress.c.pair == pair))
                     .values(rows_total=rows_total))


def latest_per_pair(engine: Engine) -> list[dict[str, Any]]:
    """The newest scan of every pair (running, done or failed), as plain dicts for the status document."""
    t = scan_progress
    newest = select(func.max(t.c.id)).group_by(t.c.pair).scalar_subquery()
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.id.in_(newest)).order_by(t.c.pair)).mappings().all()
    return [dict(r) for r in rows]
