"""Capture checkpoints (state table `checkpoint`) and the full-scan request marker (state table `job_run`).

Written by the capture stage only; read by `status`. A checkpoint row is saved only at a transaction boundary
after Kafka acknowledged every record before it. When the binlog was purged past the checkpoint and
`on_purged: resume_and_full_validate` is set, capture inserts a `job_run` row (job='full_scan_requested',
outcome='pending', finished_at NULL, detail=reason) that the daemon's scheduler answers with a full validation
(see `state/runs.py: pending_full_scan_requests / close_full_scan_requests`).
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass

from sqlalchemy import Engine, and_, select, update

from cdc_repair.model.ledger import utcnow
from cdc_repair.state.runs import FULL_SCAN_REQUESTED
from cdc_repair.state.tables import checkpoint, job_run


@dataclass(frozen=True, slots=True)
class SavedCheckpoint:
    source: str
    binlog_file: str
    binlog_pos: int
    gtid_set: str | None
    event_ts: float | None
    updated_at: dt.datetime


def load_checkpoint(engine: Engine, source: str) -> SavedCheckpoint | None:
    with engine.connect() as conn:
        row = conn.execute(select(checkpoint).where(checkpoint.c.source == source)).mappings().first()
    if row is None:
        return None
    return SavedCheckpoint(row["source"], row["binlog_file"], int(row["binlog_pos"]), row["gtid_set"],
                           row["event_ts"], row["updated_at"])


def save_checkpoint(engine: Engine, source: str, binlog_file: str, binlog_pos: int, gtid_set: str | None,
                    event_ts: float | None) -> None:
    """Upsert the source's checkpoint (one short transaction)."""
    values = {"binlog_file": binlog_file, "binlog_pos": binlog_pos, "gtid_set": gtid_set, "event_ts": event_ts,
              "updated_at": utcnow()}
    with engine.begin() as conn:
        done = conn.execute(update(checkpoint).where(checkpoint.c.source == source).values(**values)).rowcount
        if not done:
            conn.execute(checkpoint.insert().values(source=source, **values))


def request_full_scan(engine: Engine, reason: str) -> int:
    """Record that every pair needs a full validation (binlog gap); returns the marker row id."""
    with engine.begin() as conn:
        result = conn.execute(job_run.insert().values(job=FULL_SCAN_REQUESTED, host=socket.gethostname()[:128],
                                                      started_at=utcnow(), outcome="pending",
                                                      detail=reason[:4000]))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def full_scan_requested(engine: Engine) -> bool:
    """True while a full-scan request from capture is open (no finished_at yet)."""
    with engine.connect() as conn:
        row = conn.execute(select(job_run.c.id).where(and_(job_run.c.job == FULL_SCAN_REQUESTED,
                                                           job_run.c.finished_at.is_(None))).limit(1)).first()
    return row is not None
