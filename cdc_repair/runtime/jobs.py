"""Scheduler jobs: what each does, and `run_job`, which makes every run exclusive and recorded.

Exclusivity: the scheduler runs only on the leader, APScheduler has `max_instances=1`, and on top of that each
run holds the MySQL named lock `<ha.lock_name>:job:<job>` for its duration, so even a leader change in the
middle of a long full scan cannot start the same job twice at once. Each run is a `job_run` row
(start, end, outcome, detail) and counted in `metrics.JOB_RUNS`.

Repairs are not a job: the repair stage (`repair/worker.py`, on every daemon) is their one driver, so
`repair.auto_repair` and the strategy are decided in one place.

The stage functions a job runs (the full and window scans, the capture status, the undo-log table) are
imported inside the job, so loading the runtime does not load every stage.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.errors import TerminalError
from cdc_repair.model.ledger import utcnow
from cdc_repair.runtime.leader import MySQLNamedLock
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.state import runs
from cdc_repair.state.engine import StateEngine

log = logging.getLogger(__name__)


class JobSkipped(Exception):
    """The job had nothing to do; recorded as `skipped`, not as a failure."""


@dataclass
class JobContext:
    live: LiveSettings
    engine: StateEngine
    host: str
    stop: threading.Event = field(default_factory=threading.Event)  # set on shutdown: long jobs stop early

    @property
    def settings(self) -> Settings:
        return self.live.current


JobFn = Callable[[JobContext], str]


def run_job(ctx: JobContext, name: str, fn: JobFn) -> str:
    """Run `fn` exclusively across daemons and record it; returns the outcome (ok/failed/skipped/busy/idle).

    Frequent polling jobs have a cheap `DUE` check first: with nothing to do, no lock and no row (idle).
    """
    due = DUE.get(name)
    try:
        if due is not None and not due(ctx):
            return "idle"
    except Exception as exc:
        log.warning("job %s: cannot tell whether it is due: %s", name, exc)
        metrics.ERRORS.labels(stage="scheduler", kind=type(exc).__name__).inc()
        return "failed"
    lock = MySQLNamedLock(ctx.settings.state.dsn, f"{ctx.settings.ha.lock_name}:job:{name}")
    try:
        if not lock.try_acquire():
            log.info("job %s is already running elsewhere; not starting it twice", name)
            metrics.JOB_RUNS.labels(job=name, outcome="busy").inc()
            return "busy"
    except Exception as exc:
        log.warning("job %s not started: cannot take its lock: %s", name, exc)
        metrics.JOB_RUNS.labels(job=name, outcome="failed").inc()
        metrics.ERRORS.labels(stage="scheduler", kind=type(exc).__name__).inc()
        return "failed"
    try:
        return _run_locked(ctx, name, fn)
    finally:
        lock.release()


def _run_locked(ctx: JobContext, name: str, fn: JobFn) -> str:
    abandoned = runs.abandon_running(ctx.engine, name, "abandoned: the daemon running it stopped before recording")
    if abandoned:
        log.warning("job %s: closed %d run(s) left 'running' by a daemon that died", name, abandoned)
    run_id = runs.start_run(ctx.engine, name, ctx.host)
    began = time.monotonic()
    try:
        detail = fn(ctx)
        outcome = "ok"
    except JobSkipped as exc:
        detail, outcome = str(exc), "skipped"
    except Exception as exc:  # job boundary: logged with stack, counted, retried at the next trigger
        log.exception("job %s failed: %s", name, exc)
        metrics.ERRORS.labels(stage="scheduler", kind=type(exc).__name__).inc()
        detail, outcome = f"{type(exc).__name__}: {exc}", "failed"
    runs.finish_run(ctx.engine, run_id, outcome, detail)
    metrics.JOB_RUNS.labels(job=name, outcome=outcome).inc()
    if outcome == "ok":
        metrics.JOB_LAST_SUCCESS.labels(job=name).set(time.time())
    level = logging.INFO if outcome != "ok" or name not in QUIET_WHEN_OK else logging.DEBUG
    log.log(level, "job %s %s in %.1fs: %s", name, outcome, time.monotonic() - began, detail)
    return outcome


# ---------------------------------------------------------------------------------------------- the jobs


def full_validation(ctx: JobContext) -> str:
    """Full scan of every pair (resumable); differences go to the ledger like streamed ones."""
    from cdc_repair.validate.full_scan import run_full_scan

    report = run_full_scan(ctx.settings, None, resume=True, stop=ctx.stop, engine=ctx.engine)
    parts = [f"{p.pair}: rows={p.rows} differences={p.differences} {dict(p.diffs)}" for p in report.pairs]
    if report.interrupted:
        raise RuntimeError("interrupted by shutdown (resumable): " + "; ".join(parts))
    return "; ".join(parts)


def window_scan(ctx: JobContext) -> str:
    """Check rows whose utime moved since the last successful window scan (minus one interval of overlap)."""
    from cdc_repair.validate.window_scan import run_window_scan

    interval = dt.timedelta(seconds=ctx.settings.scheduler.window_scan_interval_s)
    last = runs.last_started(ctx.engine, "window_scan")
    since = (last - interval) if last else (utcnow() - 2 * interval)
    report = run_window_scan(ctx.settings, since, engine=ctx.engine)
    return f"since {since:%Y-%m-%d %H:%M:%S}Z: {_describe(report)}"


def cleanup(ctx: JobContext) -> str:
    """Forget finished ledger rows, repair logs, job runs and undo records older than the retention."""
    before = utcnow() - dt.timedelta(days=ctx.settings.scheduler.retention_days)
    done: dict[str, Any] = dict(runs.cleanup(ctx.engine, before))
    done["undo_log"] = purge_undo_logs(ctx.settings, before)
    return ", ".join(f"{k}={v}" for k, v in done.items()) + f" (older than {before:%Y-%m-%d %H:%M})"


def purge_undo_logs(settings: Settings, before: dt.datetime) -> int:
    """Delete undo records older than `before` in every database a repair may have written (both sides)."""
    from cdc_repair.repair.undo_log import undo_table

    places = {(side.server, side.schema_name) for p in settings.pairs for side in (p.source, p.target)}
    deleted = 0
    for server, schema in sorted(places):
        conn = mysql.connect(settings.server_dsn(server))
        try:
            deleted += mysql.execute(conn, Statement(f"DELETE FROM {undo_table(schema)} WHERE log_created < %s",
                                                     (before,)))
        except TerminalError as exc:
            log.debug("no undo log to purge in %s: %s", schema, exc)
        except mysql.DriverError as exc:
            if exc.args[:1] != (1146,):  # the table does not exist: nothing was ever repaired there
                raise
        finally:
            conn.close()
    return deleted


def lag_check(ctx: JobContext) -> str:
    """Binlog lag of every capture source; a warning in the log when it is large."""
    from cdc_repair.source.status import capture_status

    doc = capture_status(ctx.settings, ctx.engine)
    parts = []
    for src in _sources(doc):
        lag_s, lag_b = src.get("lag_seconds"), src.get("lag_bytes")
        parts.append(f"{src.get('source', src.get('server', '?'))}: lag {lag_s}s/{lag_b}B")
        if isinstance(lag_s, (int, float)) and lag_s > 60:
            log.warning("binlog lag is %.0fs on %s", lag_s, src.get("source"))
    return "; ".join(parts) or "no capture sources"


def full_scan_request(ctx: JobContext) -> str:
    """Answer the capture stage's 'full scan requested' markers (binlog purged) with a full validation."""
    pending = runs.pending_full_scan_requests(ctx.engine)
    if not pending:
        raise JobSkipped("no full scan requested")
    detail = full_validation(ctx)
    runs.close_full_scan_requests(ctx.engine, [int(r["id"]) for r in pending], f"answered by full validation: "
                                                                              f"{detail}")
    return f"{len(pending)} request(s): {detail}"


def find_overlaps(job_runs: list[dict[str, Any]]) -> list[str]:
    """Pairs of runs of the same job that overlap in time (pure; the soak test's "no job ran twice at once").

    Times are second-resolution in the table, so a run ending in the second the next one starts is fine.
    A run still `running` with no end overlaps any later start of the same job.
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for run in job_runs:
        if run["job"] != runs.FULL_SCAN_REQUESTED:
            by_job.setdefault(run["job"], []).append(run)
    problems = []
    for job, rows in by_job.items():
        rows.sort(key=lambda r: (r["started_at"], r["id"]))
        for prev, nxt in itertools.pairwise(rows):
            end = prev["finished_at"]
            if end is None or end > nxt["started_at"]:
                problems.append(f"{job}: run {prev['id']} ({prev['started_at']}..{end}) overlaps run {nxt['id']} "
                                f"started {nxt['started_at']}")
    return problems


def _sources(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        items = doc.get("sources", doc.get("capture", []))
        return [s for s in items if isinstance(s, dict)] if isinstance(items, list) else []
    return [s for s in doc if isinstance(s, dict)] if isinstance(doc, list) else []


def _describe(result: Any) -> str:
    if result is None:
        return "done"
    if callable(getattr(result, "to_dict", None)):
        result = result.to_dict()
    if hasattr(result, "__dataclass_fields__"):
        return ", ".join(f"{k}={getattr(result, k)}" for k in result.__dataclass_fields__
                         if isinstance(getattr(result, k), (int, float, str, bool)))
    if isinstance(result, dict):
        return ", ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in result.items()
                         if isinstance(v, (int, float, str, bool)))
    return str(result)[:500]


DUE: dict[str, Callable[[JobContext], bool]] = {
    "full_scan_request": lambda ctx: bool(runs.pending_full_scan_requests(ctx.engine)),
}
QUIET_WHEN_OK = frozenset({"lag_check"})

JOBS: dict[str, JobFn] = {
    "full_validation": full_validation,
    "window_scan": window_scan,
    "cleanup": cleanup,
    "lag_check": lag_check,
    "full_scan_request": full_scan_request,
}
