"""The shape of the status document served at `/api/status` and rendered at `/` (the contract with the daemon).

`runtime/status.py: build_status(settings, engine, daemon=None) -> dict` produces it; `cdc-repair status --json`
prints the same document. Every key is optional for the renderer (a missing section renders as "n/a"), so the
page keeps working while the producer grows. Times are epoch seconds (float) or ISO-8601 strings; both render.
"""

from __future__ import annotations

from typing import Any, TypedDict


class CheckpointDoc(TypedDict, total=False):
    source: str  # capture server name
    binlog_file: str
    binlog_pos: int
    gtid_set: str | None
    event_ts: float | None  # commit time of the last checkpointed transaction
    updated_at: str | float | None
    lag_seconds: float | None  # now - event_ts (or the live gauge)
    lag_bytes: int | None


class LagDoc(TypedDict, total=False):
    source_seconds: dict[str, float]  # capture server → binlog lag (s)
    source_bytes: dict[str, int]  # capture server → bytes behind the server's binlog end
    # this daemon's validator lag (sum over its partitions); "unknown" when kafka.end_offsets_exact is false
    consumer_messages: int | str | None


class StageDoc(TypedDict, total=False):
    """One stage, as `runtime.supervisor.StageState.as_dict()` returns it, plus `ready`."""

    name: str
    status: str  # stopped | starting | running | backoff | stopping
    ready: bool
    leader_only: bool
    restarts: int
    failures: int
    last_error: str | None
    last_error_at: float | None
    started_at: float | None
    health: dict[str, Any]


class LedgerGroupDoc(TypedDict):
    pair: str
    kind: str  # missing_in_target | extra_in_target | different
    status: str  # open | repairing | failed
    count: int


class InconsistenciesDoc(TypedDict, total=False):
    open_total: int | None  # None when the ledger cannot be read (never a false 0)
    by_pair_kind: list[LedgerGroupDoc]
    oldest_open_age_s: float | None  # the oldest entry not yet repaired (None: nothing open)
    oldest_open_pair: str | None
    unavailable: str  # why the ledger could not be read (present only then)


class ScanDoc(TypedDict, total=False):
    """The newest full scan of one pair (state table `scan_progress`)."""

    pair: str
    scan_id: str
    status: str  # running | done | failed
    rows: int
    rows_total: int | None  # the row estimate when the scan started
    progress: float | None  # rows / rows_total (0..1)
    chunks: int
    diffs: int
    rows_per_s: float | None
    eta_s: float | None  # running scans only
    silent_s: float | None  # running scans: seconds since the last saved progress (the page flags >= 120 s)
    started_at: float
    updated_at: float
    finished_at: float | None


class DeadLettersDoc(TypedDict, total=False):
    topic: str
    count: int | None  # sent by this daemon's validator since it started (None: no validator)
    last_reason: str | None
    last_at: float | None


class RepairDoc(TypedDict, total=False):
    repair_id: str
    pair: str
    pk: str
    strategy: str  # forward | compensate | rollback
    action: str
    side: str
    status: str  # applied | failed | rolled_back | dirty | skipped
    created_at: str | float
    error: str | None


class JobRunDoc(TypedDict, total=False):
    job: str
    host: str
    started_at: str | float
    finished_at: str | float | None
    outcome: str  # running | ok | failed | skipped
    detail: str | None


class StatusDoc(TypedDict, total=False):
    generated_at: float
    version: str
    host: str
    leader: bool | None  # None: HA not configured / unknown
    role: str  # leader | standby (a running daemon only)
    leader_lock: dict[str, Any]  # {name, holder_connection_id, holder: {host, pid, since} | None}
    checkpoints: list[CheckpointDoc]
    lag: LagDoc
    stages: list[StageDoc]
    inconsistencies: InconsistenciesDoc
    recent_repairs: list[RepairDoc]  # newest first, at most ~20
    repair_counts: list[dict[str, Any]]  # every repair in the log: {pair, action, status, count}
    job_runs: list[JobRunDoc]  # newest first, at most ~20
    last_job_runs: dict[str, JobRunDoc]  # the newest run of every job name
    scans: list[ScanDoc]
    dead_letters: DeadLettersDoc
    config: dict[str, Any]  # {path, generation, last_reload: {ok, at, live, restart} | {ok, at, problems} | None}
    unavailable: dict[str, str]  # section → why it could not be read (e.g. the state database is down)
    errors: list[str]  # problems building the document itself (e.g. "state database unreachable")
