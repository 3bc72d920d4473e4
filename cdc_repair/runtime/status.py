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

import logging
import time
from collections.abc import Callable
from typing import Any

from cdc_repair import __version__, observe
from cdc_repair.config import Settings
from cdc_repair.db import mysql
from cdc_repair.model.ledger import ACTIVE_STATUSES
from cdc_repair.runtime.daemon import host_id
from cdc_repair.runtime.leader import lock_holder_info
from cdc_repair.state import ledger, runs, scan_progress

log = logging.getLogger(__name__)


def build_status(settings: Settings, engine: Any, daemon: Any = None) -> dict[str, Any]:
    """The status document (see module docstring). `engine` is the state engine; `daemon` a runtime.Daemon."""
    doc: dict[str, Any] = {"generated_at": time.time(), "version": __version__,
                           "host": daemon.host if daemon is not None else host_id(),
                           "leader": daemon.is_leader if daemon is not None else None}
    if daemon is not None:
        doc["role"] = "leader" if daemon.is_leader else "standby"
    errors: list[str] = []
    unavailable: dict[str, str] = {}
    sections: dict[str, Callable[[], Any]] = {
        "checkpoints": lambda: _checkpoints(settings, engine),
        "ledger": lambda: _ledger(engine),
        "recent_repairs": lambda: runs.recent_repairs(engine, 20),
        "repair_counts": lambda: [{"pair": p, "action": a, "status": s, "count": n}
                                  for (p, a, s), n in sorted(runs.repair_counts(engine).items())],
        "job_runs": lambda: runs.recent_runs(engine, 20),
        "last_job_runs": lambda: runs.last_run_per_job(engine),
        "leader_lock": lambda: _leader_lock(settings),
        "oldest_open": lambda: _oldest_open(engine),
        "scans": lambda: _scans(engine),
    }
    for name, compute in sections.items():
        try:
            doc[name] = compute()
        except Exception as exc:  # status must work while parts of the system are down
            log.debug("status section %s failed", name, exc_info=True)
            doc[name] = None
            unavailable[name] = _reason(exc, settings)
            errors.append(f"{name}: {unavailable[name]}")
    doc["lag"] = _lag(doc.get("checkpoints") or [])
    doc["unavailable"] = unavailable
    doc["inconsistencies"] = _inconsistencies(doc.get("ledger"), doc.get("oldest_open"), unavailable.get("ledger"))
    if daemon is not None:
        dstatus = daemon.status()
        doc["stages"] = [dict(s, ready=s["status"] == "running" and (s.get("health") or {}).get("ready") is not False)
                         for s in dstatus["stages"]]
        doc["lag"]["consumer_messages"] = _consumer_lag(dstatus["stages"])
        doc["dead_letters"] = _dead_letters(dstatus["stages"], settings)
        doc["config"] = dstatus["config"]
        doc["started_at"] = dstatus["started_at"]
    doc["errors"] = errors
    return doc


def _reason(exc: BaseException, settings: Settings) -> str:
    """One line: a driver error names the state database (masked) and the server's message, not a stack."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        return str(mysql.classify(orig, f"state database {settings.state.dsn.masked()}"))[:300]
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _checkpoints(settings: Settings, engine: Any) -> list[dict[str, Any]]:
    """The capture stage's view of each source (saved checkpoint, the server's binlog end, the lag)."""
    from cdc_repair.source.status import capture_status  # lazy: the binlog library only when a status is built

    return [dict(c) for c in capture_status(settings, engine)["sources"]]


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
        if status in ACTIVE_STATUSES:
            open_by_pair[pair] = open_by_pair.get(pair, 0) + n
    return {"entries": entries, "open_by_pair": open_by_pair, "open_total": sum(open_by_pair.values())}


def _inconsistencies(led: dict[str, Any] | None, oldest: dict[str, Any] | None,
                     unavailable: str | None) -> dict[str, Any]:
    """Open counts from the ledger; without the ledger (state database down) every number is None (the page
    says n/a and why), never a 0 that reads as "all consistent"."""
    if led is None:
        return {"open_total": None, "by_pair_kind": [], "oldest_open_age_s": None, "oldest_open_pair": None,
                "unavailable": unavailable or "ledger not read"}
    oldest = oldest or {}
    return {"open_total": led.get("open_total", 0),
            "by_pair_kind": [e for e in led.get("entries", []) if e["status"] in ACTIVE_STATUSES],
            "oldest_open_age_s": oldest.get("age_s"), "oldest_open_pair": oldest.get("pair")}


def _oldest_open(engine: Any) -> dict[str, Any]:
    """The oldest ledger entry not yet repaired: its pair and age in seconds (None/None when nothing is open)."""
    snapshot = observe.read_ledger(engine)
    found = [(c.oldest_first_seen, c.pair) for c in snapshot.counts if c.oldest_first_seen is not None]
    if not found:
        return {"age_s": None, "pair": None}
    first_seen, pair = min(found)
    return {"age_s": round(max(0.0, snapshot.taken_at - observe.epoch(first_seen)), 1), "pair": pair}


def _scans(engine: Any) -> list[dict[str, Any]]:
    """The newest full scan of each pair: rows done of the estimated total, rate, and (while running) the ETA."""
    now = time.time()
    out = []
    for row in scan_progress.latest_per_pair(engine):
        started, updated = observe.epoch(row["started_at"]), observe.epoch(row["updated_at"])
        ended = observe.epoch(row["finished_at"]) if row["finished_at"] else updated  # rows were saved then
        rows, total = int(row["rows"] or 0), row["rows_total"]
        # the state table keeps whole seconds: a scan that saved rows within its first second ran for <= 1 s
        elapsed = max(0.0, ended - started)
        rate = rows / max(elapsed, 1.0) if rows else None
        remaining = max(0, int(total) - rows) if total else None
        eta = (remaining / rate if rate and remaining is not None else None) if row["status"] == "running" else None
        out.append({"pair": row["pair"], "scan_id": row["scan_id"], "status": row["status"], "rows": rows,
                    "rows_total": int(total) if total else None, "chunks": int(row["chunks"] or 0),
                    "diffs": int(row["diffs"] or 0), "started_at": started,
                    "updated_at": updated,
                    # a running scan saves progress after every chunk: a long silence means it died or hangs
                    "silent_s": round(max(0.0, now - updated), 1) if row["status"] == "running" else None,
                    "finished_at": observe.epoch(row["finished_at"]) if row["finished_at"] else None,
                    "progress": round(min(1.0, rows / int(total)), 4) if total else None,
                    "rows_per_s": round(rate, 1) if rate is not None else None,
                    "eta_s": round(eta, 1) if eta is not None else None})
    return out


def _dead_letters(stages: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """This daemon's validator: messages sent to the dead-letter topic since it started, and the last reason."""
    for stage in stages:
        if stage.get("name") == "validate":
            health = stage.get("health") or {}
            last = health.get("last_dead_letter") or {}
            count = health.get("dead_letters")
            return {"topic": settings.kafka.dead_letter_topic, "count": count if isinstance(count, int) else 0,
                    "last_reason": last.get("reason"), "last_at": last.get("at")}
    return {"topic": settings.kafka.dead_letter_topic, "count": None, "last_reason": None, "last_at": None}
