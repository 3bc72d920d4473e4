"""Job runs (state table `job_run`) and the read-only queries behind `cdc-repair status`.

Written by the daemon's scheduler (runtime/jobs.py): one row per run, `running` at start, then
`ok` / `failed` / `skipped` with `finished_at`. The capture stage writes a marker row with
`job='full_scan_requested'` when the binlog was purged past its checkpoint; the scheduler answers it with a full
validation and then closes the marker (`outcome='ok'`, `finished_at` set). Times are naive UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, and_, delete, desc, func, select, update

from cdc_repair.model.ledger import FINISHED_STATUSES, utcnow
from cdc_repair.state.tables import checkpoint, inconsistency, job_run, repair_log

FULL_SCAN_REQUESTED = "full_scan_requested"  # the capture stage's marker job (state/checkpoints.py)


def _row(mapping: Any) -> dict[str, Any]:
    """A plain dict with plain `str` keys (SQLAlchemy's keys are a str subclass that orjson refuses)."""
    return {str(k): v for k, v in mapping.items()}


def start_run(engine: Engine, job: str, host: str, *, now: dt.datetime | None = None) -> int:
    with engine.begin() as conn:
        result = conn.execute(job_run.insert().values(job=job, host=host, started_at=now or utcnow(),
                                                      outcome="running"))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def finish_run(engine: Engine, run_id: int, outcome: str, detail: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(update(job_run).where(job_run.c.id == run_id)
                     .values(outcome=outcome, finished_at=utcnow(), detail=(detail or "")[:4000] or None))


def abandon_running(engine: Engine, job: str, detail: str) -> int:
    """Close `running` rows of `job` left by a daemon that died mid-run (call only while holding the job lock)."""
    with engine.begin() as conn:
        result = conn.execute(update(job_run)
                              .where(and_(job_run.c.job == job, job_run.c.outcome == "running"))
                              .values(outcome="failed", finished_at=utcnow(), detail=detail))
        return int(result.rowcount)


def last_started(engine: Engine, job: str, outcome: str = "ok") -> dt.datetime | None:
    """Start time of the job's last run with `outcome` (the window scan continues from there)."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(job_run.c.started_at))
                             .where(and_(job_run.c.job == job, job_run.c.outcome == outcome))).scalar()
    return value if isinstance(value, dt.datetime) else None


def pending_full_scan_requests(engine: Engine) -> list[dict[str, Any]]:
    """Open markers written by the capture stage (binlog purged → full validation needed)."""
    with engine.connect() as conn:
        rows = conn.execute(select(job_run).where(and_(job_run.c.job == FULL_SCAN_REQUESTED,
                                                       job_run.c.finished_at.is_(None)))
                            .order_by(job_run.c.id)).mappings().all()
    return [_row(r) for r in rows]


def close_full_scan_requests(engine: Engine, ids: list[int], detail: str) -> None:
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(job_run).where(job_run.c.id.in_(ids))
                     .values(outcome="ok", finished_at=utcnow(), detail=detail[:4000]))


def last_success_per_job(engine: Engine) -> dict[str, dt.datetime]:
    """When each job last finished `ok` (naive UTC)."""
    with engine.connect() as conn:
        rows = conn.execute(select(job_run.c.job, func.max(job_run.c.finished_at))
                            .where(and_(job_run.c.outcome == "ok", job_run.c.finished_at.is_not(None)))
                            .group_by(job_run.c.job)).all()
    return {str(job): at for job, at in rows if isinstance(at, dt.datetime)}


def recent_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(job_run).order_by(desc(job_run.c.id)).limit(limit)).mappings().all()
    return [_row(r) for r in rows]


def last_run_per_job(engine: Engine) -> dict[str, dict[str, Any]]:
    """The newest run of every job name."""
    with engine.connect() as conn:
        newest = select(func.max(job_run.c.id)).group_by(job_run.c.job).scalar_subquery()
        rows = conn.execute(select(job_run).where(job_run.c.id.in_(newest))).mappings().all()
    return {str(r["job"]): _row(r) for r in rows}


def all_runs(engine: Engine, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    q = select(job_run).order_by(job_run.c.job, job_run.c.started_at)
    if since is not None:
        q = q.where(job_run.c.started_at >= since)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q).mappings().all()]


def recent_repairs(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    cols = [repair_log.c.repair_id, repair_log.c.pair, repair_log.c.pk, repair_log.c.strategy, repair_log.c.action,
            repair_log.c.side, repair_log.c.status, repair_log.c.error, repair_log.c.created_at]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).order_by(desc(repair_log.c.id)).limit(limit)).mappings().all()
    return [_row(r) for r in rows]


def repair_counts(engine: Engine) -> dict[tuple[str, str, str], int]:
    """Repair-log rows by (pair, action, status)."""
    t = repair_log
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.pair, t.c.action, t.c.status, func.count())
                            .group_by(t.c.pair, t.c.action, t.c.status)).all()
    return {(r[0], r[1], r[2]): int(r[3]) for r in rows}


def checkpoints(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(checkpoint)).mappings().all()]


def cleanup(engine: Engine, before: dt.datetime) -> dict[str, int]:
    """Delete finished ledger entries, repair-log rows and finished job runs older than `before`."""
    with engine.begin() as conn:
        ledger = conn.execute(delete(inconsistency).where(and_(
            inconsistency.c.status.in_(FINISHED_STATUSES), inconsistency.c.updated_at < before))).rowcount
        repairs = conn.execute(delete(repair_log).where(repair_log.c.created_at < before)).rowcount
        runs = conn.execute(delete(job_run).where(and_(job_run.c.finished_at.is_not(None),
                                                       job_run.c.finished_at < before))).rowcount
    return {"ledger": int(ledger), "repair_log": int(repairs), "job_run": int(runs)}
