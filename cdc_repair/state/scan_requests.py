"""Full-validation requests from capture for changes it could not publish (state table `job_run`).

Same marker as a purged binlog (`job='full_scan_requested'`, `outcome='pending'`, `finished_at` NULL, answered by
the scheduler's `full_scan_request` job, see state/runs.py), but written once per incident rather than once per
event: a new marker is needed only when the previous one may already have been picked up by a run that started
before the latest uncapturable change. Ids are auto-increment, so "a `full_scan_request` run with a larger id, or
one still running" is exactly "a run that may have listed the marker already".
"""

from __future__ import annotations

import socket

from sqlalchemy import Engine, and_, or_, select

from cdc_repair.model.ledger import utcnow
from cdc_repair.state.runs import FULL_SCAN_REQUESTED
from cdc_repair.state.tables import job_run

ANSWERING_JOB = "full_scan_request"  # the scheduler job that answers the markers (runtime/jobs.py)


def request_full_scan_once(engine: Engine, reason: str, previous: int | None) -> int:
    """The id of an open marker that no run has picked up yet (`previous`, if still so), else of a new one."""
    with engine.begin() as conn:
        if previous is not None:
            still_open = conn.execute(select(job_run.c.id).where(and_(
                job_run.c.id == previous, job_run.c.finished_at.is_(None)))).first()
            picked = conn.execute(select(job_run.c.id).where(and_(
                job_run.c.job == ANSWERING_JOB,
                or_(job_run.c.id > previous, job_run.c.outcome == "running"))).limit(1)).first()
            if still_open is not None and picked is None:
                return previous
        result = conn.execute(job_run.insert().values(job=FULL_SCAN_REQUESTED, host=socket.gethostname()[:128],
                                                      started_at=utcnow(), outcome="pending", detail=reason[:4000]))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def request_open(engine: Engine, request_id: int) -> bool:
    """True while the marker `request_id` has not been answered (no finished_at)."""
    with engine.connect() as conn:
        row = conn.execute(select(job_run.c.finished_at).where(job_run.c.id == request_id)).first()
    return row is not None and row[0] is None


def newest_open_request(engine: Engine, detail_prefix: str) -> int | None:
    """The newest unanswered marker whose detail starts with `detail_prefix` (a restarted tailer's own), or None."""
    pattern = detail_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with engine.connect() as conn:
        row = conn.execute(select(job_run.c.id).where(and_(
            job_run.c.job == FULL_SCAN_REQUESTED, job_run.c.finished_at.is_(None),
            job_run.c.detail.like(pattern, escape="\\"))).order_by(job_run.c.id.desc()).limit(1)).first()
    return int(row[0]) if row is not None else None
