"""A filled-in status document for the status page's tests and `bench/bench_web.py` (not used by the service)."""

from __future__ import annotations

from cdc_repair.web.status_doc import StatusDoc

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
    "last_job_runs": {"full_scan": {"job": "full_scan", "host": "cdc-repair-1", "started_at": "2026-11-22T03:00:00",
                                    "finished_at": "2026-11-22T03:02:11", "outcome": "ok",
                                    "detail": "rows=120000 diffs=2"}},
    "scans": [{"pair": "articles", "scan_id": "5f1c0a9e2b7d4c11", "status": "running", "rows": 40000,
               "rows_total": 120000, "progress": 0.3333, "chunks": 40, "diffs": 1, "rows_per_s": 2000.0,
               "eta_s": 40.0, "started_at": 1794999980.0, "updated_at": 1794999999.0, "finished_at": None}],
    "dead_letters": {"topic": "cdc-repair.dlq", "count": 1, "last_reason": "malformed: no 'data' array",
                     "last_at": 1794999000.0},
    "config": {"path": "/etc/cdc-repair/config.yaml", "generation": 1,
               "last_reload": {"ok": True, "at": 1794998000.0, "live": ["validator.settle_delay_s"], "restart": []}},
    "unavailable": {},
    "errors": [],
}
