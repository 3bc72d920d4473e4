"""Observability glue: ledger-derived gauges, metric label initialisation, and dependency readiness.

Why a separate module: the ledger gauges must reflect the *state tables* (they survive restarts and include
inconsistencies found or repaired by the CLI), so they are refreshed by querying, not incremented by stages.
Readiness probes run in a background thread so `/readyz` answers instantly even when a broker hangs.

No third-party import here: the ledger, job runs and scans are read through the state repository (`state/`),
Kafka and MySQL checks go through `sink/kafka_admin.py` and `db/mysql.py`, metric objects come from `metrics.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdc_repair import metrics
from cdc_repair.db.dsn import Dsn
from cdc_repair.errors import UnreachableError
from cdc_repair.model.ledger import LedgerCount
from cdc_repair.model.verdict import INCONSISTENCY_KINDS
from cdc_repair.state import ledger, runs, scan_progress
from cdc_repair.state.engine import StateEngine

log = logging.getLogger(__name__)

REPAIR_OUTCOMES: tuple[str, ...] = ("applied", "failed", "parked", "guard_failed")
ROLLBACK_OUTCOMES: tuple[str, ...] = ("undone", "skipped", "dirty", "forced")
JOB_OUTCOMES: tuple[str, ...] = ("ok", "failed", "skipped", "busy")
# The scheduler's job names (runtime/jobs.py: JOBS) and the daemon's stage names (app/daemon.py).
JOBS: tuple[str, ...] = ("full_validation", "window_scan", "cleanup", "lag_check", "full_scan_request")
STAGES: tuple[str, ...] = ("validate", "repair", "scheduler")


@dataclass(frozen=True)
class LedgerSnapshot:
    counts: tuple[LedgerCount, ...]
    job_last_success: Mapping[str, float]  # job → epoch seconds
    taken_at: float

    @property
    def open_total(self) -> int:
        return sum(c.count for c in self.counts)

    def by_pair_kind(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for c in self.counts:
            out[(c.pair, c.kind)] = out.get((c.pair, c.kind), 0) + c.count
        return out


# ------------------------------------------------------------------ ledger gauges

_seen_labels: set[tuple[str, str, str]] = set()
_seen_pairs: set[str] = set()
_seen_lock = threading.Lock()


def epoch(value: datetime) -> float:
    """State tables store naive UTC datetimes."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def read_ledger(engine: StateEngine) -> LedgerSnapshot:
    """Count not-yet-repaired ledger entries by pair/kind/status and the last successful run of each job."""
    counts = tuple(ledger.active_counts(engine))
    last_ok = {job: epoch(at) for job, at in runs.last_success_per_job(engine).items()}
    return LedgerSnapshot(counts=counts, job_last_success=last_ok, taken_at=time.time())


def apply_ledger_gauges(snapshot: LedgerSnapshot) -> None:
    """Set the ledger gauges from a snapshot; series seen before but now empty drop to 0 (not to 'no data')."""
    now = snapshot.taken_at
    current = {(c.pair, c.kind, c.status): c.count for c in snapshot.counts}
    oldest: dict[str, float] = {}
    for c in snapshot.counts:
        if c.oldest_first_seen is not None:
            age = max(0.0, now - epoch(c.oldest_first_seen))
            oldest[c.pair] = max(oldest.get(c.pair, 0.0), age)
    with _seen_lock:
        for labels in _seen_labels - current.keys():
            metrics.OPEN_INCONSISTENCIES.labels(*labels).set(0)
        for labels, count in current.items():
            metrics.OPEN_INCONSISTENCIES.labels(*labels).set(count)
        _seen_labels.update(current)
        _seen_pairs.update(c.pair for c in snapshot.counts)
        for pair in _seen_pairs:
            metrics.LEDGER_OLDEST_OPEN_SECONDS.labels(pair=pair).set(oldest.get(pair, 0.0))
    for job, ts in snapshot.job_last_success.items():
        metrics.JOB_LAST_SUCCESS.labels(job=job).set(ts)
    metrics.LEDGER_UP.set(1)


def withdraw_ledger_gauges() -> None:
    """The ledger could not be read: drop its series (Prometheus shows no data, the page n/a) instead of
    exporting zeros or stale counts that read as "all consistent", and set `cdc_repair_ledger_up` to 0."""
    with _seen_lock:
        metrics.OPEN_INCONSISTENCIES.clear()
        metrics.LEDGER_OLDEST_OPEN_SECONDS.clear()
    metrics.LEDGER_UP.set(0)


def refresh_ledger_gauges(engine: StateEngine) -> LedgerSnapshot:
    """Query the ledger (state table `inconsistency`) and job runs, and refresh the gauges derived from them;
    also the full-scan gauges from `scan_progress`, so a scan run by the CLI shows on the daemon's /metrics."""
    snapshot = read_ledger(engine)
    apply_ledger_gauges(snapshot)
    apply_scan_gauges(read_scans(engine))
    return snapshot


def read_scans(engine: StateEngine) -> list[tuple[str, str, int, int | None, float]]:
    """The newest scan of each pair: (pair, status, rows done, rows estimated, rows/s so far)."""
    out = []
    for row in scan_progress.latest_per_pair(engine):
        pair, status, done, total = row["pair"], row["status"], row["rows"], row["rows_total"]
        started, updated = row["started_at"], row["updated_at"]
        elapsed = epoch(updated) - epoch(started) if isinstance(started, datetime) and isinstance(
            updated, datetime) else 0.0
        out.append((str(pair), str(status), int(done or 0), int(total) if total else None,
                    int(done or 0) / elapsed if elapsed > 0 else 0.0))
    return out


def apply_scan_gauges(scans: Iterable[tuple[str, str, int, int | None, float]]) -> None:
    """`cdc_repair_scan_progress_ratio` (1 when done) and, while running, `cdc_repair_scan_rows_per_second`."""
    for pair, status, done, total, rate in scans:
        if status == "done":
            metrics.SCAN_PROGRESS.labels(pair).set(1.0)
        elif total:
            metrics.SCAN_PROGRESS.labels(pair).set(min(1.0, done / total))
        if status == "running":
            metrics.SCAN_ROWS_PER_SECOND.labels(pair).set(rate)


class LedgerGaugeStage:
    """A supervisor stage (`run(stop_event)`) refreshing the ledger gauges every `interval_s`.

    A failed refresh is logged with its stack, counted in `metrics.ERRORS` and retried on the next tick.
    """

    def __init__(self, engine: StateEngine, interval_s: float = 5.0) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.last: LedgerSnapshot | None = None

    def run(self, stop_event: threading.Event) -> None:
        failing = False
        while not stop_event.is_set():
            try:
                self.last = refresh_ledger_gauges(self.engine)
                if failing:
                    log.info("ledger gauges refreshed again")
                failing = False
            except Exception as exc:  # a loop boundary: never let one bad refresh end the stage
                withdraw_ledger_gauges()
                metrics.ERRORS.labels(stage="observe", kind=type(exc).__name__[:40]).inc()
                if not failing:  # the stack once per outage, not every interval
                    log.exception("refreshing ledger gauges failed (retrying every %.0fs): %s", self.interval_s, exc)
                failing = True
            stop_event.wait(self.interval_s)


# ------------------------------------------------------------------ label initialisation


def capture_stage_names(sources: Iterable[str]) -> list[str]:
    """The daemon's capture stage names: `capture` for one source, `capture:<source>` for each of several."""
    sources = list(sources)
    return ["capture"] if len(sources) == 1 else [f"capture:{s}" for s in sources]


def initialise_metric_labels(pairs: Iterable[str], sources: Iterable[str] = (), stages: Iterable[str] | None = None,
                             strategies: Iterable[str] = ("forward", "compensate"),
                             jobs: Iterable[str] = JOBS) -> None:
    """Create the bounded label children at 0, so dashboards show 0 (not 'no data') before the first event.

    Prometheus practice: a counter that is only created on its first increment makes `rate()` and alerts
    blind until then. Only bounded label sets are initialised (never reason/error kinds).
    `stages` defaults to the daemon's names (`capture_stage_names`, validate, repair, scheduler).
    `cdc_repair_stage_up` is not touched here: the supervisor owns it (one series per stage, with the role).
    """
    pairs, strategies, sources = list(pairs), list(strategies), list(sources)
    if stages is None:
        stages = [*capture_stage_names(sources), *STAGES]
    for pair in pairs:
        for kind in INCONSISTENCY_KINDS:
            metrics.VERDICTS.labels(pair=pair, kind=kind)
            metrics.CONFIRMED.labels(pair=pair, kind=kind)
        for strategy in strategies:
            for outcome in REPAIR_OUTCOMES:
                metrics.REPAIRS.labels(pair=pair, strategy=strategy, outcome=outcome)
        with _seen_lock:  # its ledger series appear (at 0 when nothing is open) with the first ledger read
            _seen_pairs.add(pair)
    for outcome in ROLLBACK_OUTCOMES:
        metrics.ROLLBACKS.labels(outcome=outcome)
    for job in jobs:
        for outcome in JOB_OUTCOMES:
            metrics.JOB_RUNS.labels(job=job, outcome=outcome)
    for stage in stages:
        metrics.STAGE_RESTARTS.labels(stage=stage)
    for source in sources:
        metrics.BINLOG_PURGED.labels(source=source)
        metrics.CHECKPOINTS.labels(source=source)


# ------------------------------------------------------------------ readiness of dependencies

Check = Callable[[], str | None]  # None when healthy, else a one-line reason


def mysql_check(dsn: Dsn, timeout_s: float = 2.0) -> Check:
    """A check that logs in to a MySQL server and runs nothing else."""
    from cdc_repair.db import mysql

    def check() -> str | None:
        try:
            mysql.connect(dsn, timeout_s=timeout_s).close()
            return None
        except Exception as exc:  # any failure means "not ready"; the reason is shown, never the password
            return f"{dsn.masked()}: {type(exc).__name__}"

    return check


def tables_check(pair: Any, settings: Any, timeout_s: float = 2.0, recheck_ok_s: float = 30.0) -> Check:
    """A check that the pair's source and target tables exist (a missing table is not ready, with the table,
    the server and the fix named), run on the pair's own servers; a failed login is `db:<server>`'s to report.
    Tables seldom vanish: after a pass it asks again only after `recheck_ok_s` (two logins per pair every probe
    interval would be connection churn on production servers); while failing, every probe."""
    from cdc_repair.db import mysql
    from cdc_repair.db.sql import Statement

    passed_at = [-recheck_ok_s]

    def check() -> str | None:
        if time.monotonic() - passed_at[0] < recheck_ok_s:
            return None
        reason = lookup()
        if reason is None:
            passed_at[0] = time.monotonic()
        return reason

    def lookup() -> str | None:
        missing = []
        for side, ref in (("source", pair.source), ("target", pair.target)):
            try:
                conn = mysql.connect(settings.server_dsn(ref.server).with_database(None), timeout_s=timeout_s)
            except UnreachableError:
                return None  # `db:<server>` reports it; this check says nothing it does not know
            try:
                row = mysql.fetch_one(conn, Statement(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (ref.schema_name, ref.table_name)))
            finally:
                conn.close()
            if not row or not row[0]:
                missing.append(f"{side} table {ref.table} does not exist on server {ref.server} (create it, or "
                               f"fix pairs[{pair.name}].{side}.table)")
        return "; ".join(missing) or None

    return check


def broker_check(bootstrap: Sequence[str], timeout_ms: int = 2000) -> Check:
    from cdc_repair.sink.kafka_admin import broker_reachable

    return lambda: broker_reachable(list(bootstrap), timeout_ms=timeout_ms)


def dependency_checks(settings: Any) -> dict[str, Check]:
    """Checks for the broker, the state database, every configured server (a `config.Settings`) and every pair's
    tables (`tables:<pair>`)."""
    checks: dict[str, Check] = {"broker": broker_check(settings.kafka.bootstrap_servers),
                                "db:state": mysql_check(settings.state.dsn)}
    for name, server in settings.servers.items():
        checks[f"db:{name}"] = mysql_check(server.dsn)
    for pair in settings.pairs:
        checks[f"tables:{pair.name}"] = tables_check(pair, settings)
    return checks


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str | None
    checked_at: float


class ReadinessProbe:
    """Runs `checks` in a background thread every `interval_s`; `snapshot()` returns the latest results at once.

    Each check runs in its own thread with a deadline, so one hung dependency (a frozen broker) marks only
    itself not ready and never delays the others or the HTTP handler.
    """

    def __init__(self, checks: Mapping[str, Check], interval_s: float = 2.0, deadline_s: float = 5.0) -> None:
        self.checks = dict(checks)
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self._results = {name: ProbeResult(False, "not checked yet", 0.0) for name in self.checks}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ReadinessProbe:
        """Check in the background from now on (dependencies read 'not checked yet' until the first round)."""
        self._thread = threading.Thread(target=self._loop, name="readiness-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.deadline_s + 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check_now()
            self._stop.wait(self.interval_s)

    def check_now(self) -> dict[str, ProbeResult]:
        """Run every check in parallel; a check still running at the deadline counts as not ready."""
        found: dict[str, ProbeResult] = {}
        threads = []
        for name, check in self.checks.items():
            def run(name: str = name, check: Check = check) -> None:
                try:
                    reason = check()
                except Exception as exc:  # a probe that raises is a failed probe, with its reason
                    reason = f"{type(exc).__name__}: {exc}"[:200]
                found[name] = ProbeResult(reason is None, reason, time.time())

            thread = threading.Thread(target=run, name=f"probe-{name}", daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + self.deadline_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        now = time.time()
        results = {name: found.get(name, ProbeResult(False, f"no answer within {self.deadline_s:g}s", now))
                   for name in self.checks}
        with self._lock:
            previous, self._results = self._results, results
        for name, result in results.items():  # log changes only, not every probe
            before = previous.get(name)
            if not result.ok and (before is None or before.ok or before.checked_at == 0.0):
                log.warning("not ready: %s (%s)", name, result.reason)
            elif result.ok and before is not None and not before.ok and before.checked_at > 0:
                log.info("ready again: %s", name)
        return results

    def snapshot(self) -> dict[str, bool]:
        with self._lock:
            return {name: r.ok for name, r in self._results.items()}

    def reasons(self) -> dict[str, str]:
        with self._lock:
            return {name: r.reason for name, r in self._results.items() if r.reason}
