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
    open_total: int
    by_pair_kind: list[LedgerGroupDoc]


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
    errors: list[str]  # problems building the document itself (e.g. "state database unreachable")


EXAMPLE_STATUS: StatusDoc = {
    "generated_at": 1795000000.0,
    "version": "0.1.0",
    "host": "cdc-repair-1",
    "leader": True,
    "checkpoints": [{"source": "author", "binlog_file": "binlog.000003", "binlog_pos": 48213,
                     "gtid_set": "0-11-1042", "event_ts": 1794999999.2, "updated_at": "2026-11-22T05:00:00",
                     "lag_seconds": 0.8, "lag_bytes": 0}],
    "lag": {"source_seconds": {"author": 0.8}, "source_bytes": {"author": 0}, "consumer_messages": 3},
    "stages": [
        {"name": "capture", "status": "running", "ready": True, "leader_only": True, "restarts": 0, "failures": 0,
         "last_error": None, "last_error_at": None, "started_at": 1794999000.0, "health": {}},
        {"name": "validate", "status": "running", "ready": True, "leader_only": False, "restarts": 1,
         "failures": 1, "last_error": "UnreachableError: cannot connect to mysql://root:***@127.0.0.1:3306/",
         "last_error_at": 1794999500.0, "started_at": 1794999510.0, "health": {}},
        {"name": "repair", "status": "running", "ready": True, "leader_only": False, "restarts": 0, "failures": 0,
         "last_error": None, "last_error_at": None, "started_at": 1794999000.0, "health": {}},
    ],
    "inconsistencies": {"open_total": 5, "by_pair_kind": [
        {"pair": "articles", "kind": "missing_in_target", "status": "open", "count": 3},
        {"pair": "articles", "kind": "different", "status": "failed", "count": 2},
    ]},
    "recent_repairs": [
        {"repair_id": "r-20261122-0001", "pair": "articles", "pk": "[\"42\"]", "strategy": "forward",
         "action": "insert", "side": "target", "status": "applied", "created_at": "2026-11-22T04:59:58",
         "error": None},
    ],
    "job_runs": [
        {"job": "full_scan", "host": "cdc-repair-1", "started_at": "2026-11-22T03:00:00",
         "finished_at": "2026-11-22T03:02:11", "outcome": "ok", "detail": "rows=120000 diffs=2"},
    ],
    "errors": [],
}
