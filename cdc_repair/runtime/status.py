"""The status document: one dict shared by `cdc-repair status [--json]` and the web server's /api/status.

`build_status(settings, engine, daemon=None)` reads the state tables (checkpoint, ledger, repair log, job runs)
and the leader lock; with a running `daemon` it adds its stages (status, restarts, last error), leadership
and config-reload state. The shape follows `cdc_repair/web/status_doc.py: StatusDoc` (the renderer's contract):
generated_at, version, host, leader, checkpoints, lag, stages, inconsistencies, recent_repairs, job_runs, errors;
plus `ledger` (every status, not only open), `repair_counts`, `last_job_runs`, `leader_lock` and `config`.
Every section is computed independently: a failing one is named under `errors` and the rest still returned,
so status works while parts of the system are down.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from cdc_repair import __version__
from cdc_repair.config import Settings
from cdc_repair.runtime.daemon import host_id
from cdc_repair.runtime.leader import lock_holder_info
from cdc_repair.state import ledger, runs

log = logging.getLogger(__name__)

ACTIVE = ("open", "repairing", "failed")


def build_status(settings: Settings, engine: Any, daemon: Any = None) -> dict[str, Any]:
    """The status document (see module docstring). `engine` is the state engine; `daemon` a runtime.Daemon."""
    doc: dict[str, Any] = {"generated_at": time.time(), "version": __version__,
                           "host": daemon.host if daemon is not None else host_id(),
                           "leader": daemon.is_leader if daemon is not None else None}
    if daemon is not None:
        doc["role"] = "leader" if daemon.is_leader else "standby"
    errors: list[str] = []
    sections: dict[str, Callable[[], Any]] = {
        "checkpoints": lambda: _checkpoints(settings, engine),
        "ledger": lambda: _ledger(engine),
        "recent_repairs": lambda: runs.recent_repairs(engine, 20),
        "repair_counts": lambda: [{"pair": p, "action": a, "status": s, "count": n}
                                  for (p, a, s), n in sorted(runs.repair_counts(engine).items())],
        "job_runs": lambda: runs.recent_runs(engine, 20),
        "last_job_runs": lambda: runs.last_run_per_job(engine),
        "leader_lock": lambda: _leader_lock(settings),
    }
    for name, compute in sections.items():
        try:
            doc[name] = compute()
        except Exception as exc:  # status must work while parts of the system are down
            log.debug("status section %s failed", name, exc_info=True)
            doc[name] = None
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    doc["lag"] = _lag(doc.get("checkpoints") or [])
    led = doc.get("ledger") or {}
    doc["inconsistencies"] = {"open_total": led.get("open_total", 0),
                              "by_pair_kind": [e for e in led.get("entries", []) if e["status"] in ACTIVE]}
    if daemon is not None:
        dstatus = daemon.status()
        doc["stages"] = [dict(s, ready=s["status"] == "running" and (s.get("health") or {}).get("ready") is not False)
                         for s in dstatus["stages"]]
        doc["lag"]["consumer_messages"] = _consumer_lag(dstatus["stages"])
        doc["config"] = dstatus["config"]
        doc["started_at"] = dstatus["started_at"]
    doc["errors"] = errors
    return doc


def _checkpoints(settings: Settings, engine: Any) -> list[dict[str, Any]]:
    """The capture stage's view when it is installed (`source/status.py`), else the checkpoint table."""
    try:
        capture_status = importlib.import_module("cdc_repair.source.status").capture_status
    except (ImportError, AttributeError):
        capture_status = None
    if capture_status is not None:
        found = capture_status(settings, engine)
        if isinstance(found, dict):
            found = found.get("checkpoints", found.get("sources", []))
        if isinstance(found, list):
            return [dict(c) for c in found]
    now = time.time()
    return [{"source": c["source"], "binlog_file": c["binlog_file"], "binlog_pos": c["binlog_pos"],
             "gtid_set": c["gtid_set"], "event_ts": c["event_ts"], "updated_at": c["updated_at"],
             "lag_seconds": (now - c["event_ts"]) if c["event_ts"] else None}
            for c in runs.checkpoints(engine)]


def _lag(checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {"source_seconds": {c["source"]: c["lag_seconds"] for c in checkpoints
                               if isinstance(c.get("lag_seconds"), (int, float))},
            "source_bytes": {c["source"]: c["lag_bytes"] for c in checkpoints
                             if isinstance(c.get("lag_bytes"), int)},
            "consumer_messages": None}  # a running daemon's validator fills it in


def _leader_lock(settings: Settings) -> dict[str, Any]:
    info = lock_holder_info(settings.state.dsn, settings.ha.lock_name)
    holder = None
    if info["connection_id"] is not None:
        holder = {k: info[k] for k in ("host", "pid", "since")}
    return {"name": settings.ha.lock_name, "holder_connection_id": info["connection_id"], "holder": holder}


def _consumer_lag(stages: list[dict[str, Any]]) -> int | str | None:
    """This daemon's validator lag (its partitions), "unknown" where the broker's end offsets are wrong
    (`kafka.end_offsets_exact: false`), None before the first measurement or without a validator."""
    for stage in stages:
        if stage.get("name") == "validate":
            value = (stage.get("health") or {}).get("consumer_lag_messages")
            return value if isinstance(value, (int, str)) else None
    return None


def _ledger(engine: Any) -> dict[str, Any]:
    counts = ledger.counts(engine)
    entries = [{"pair": p, "kind": k, "status": s, "count": n} for (p, k, s), n in sorted(counts.items())]
    open_by_pair: dict[str, int] = {}
    for (pair, _kind, status), n in counts.items():
        if status in ACTIVE:
            open_by_pair[pair] = open_by_pair.get(pair, 0) + n
    return {"entries": entries, "open_by_pair": open_by_pair, "open_total": sum(open_by_pair.values())}
