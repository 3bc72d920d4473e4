"""The repair log (state table `repair_log`) and the registry of repair runs (`repair_run`), for the repairer.

A repair_log row records one applied (or attempted) write; its `repair_id` is the undo record's xid, so the
insert is `INSERT IGNORE` and a re-run never doubles a record. A repair_run row is a run that claims ledger
entries, with a heartbeat, so a later run can tell whether the holder of a claim is dead (`repair/runs.py`).
Times are the database's UTC clock, so runs on several hosts agree.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, insert, null, select, update

from cdc_repair.state.tables import repair_log, repair_run

LOG_COLUMNS = ("repair_id", "run_id", "pair", "pk", "strategy", "action", "side", "status", "sql_text", "error")
_NOW = func.utc_timestamp


def _write(engine: Engine, stmt: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


# ------------------------------------------------------------ repair runs (heartbeats)

def register_run(engine: Engine, run_id: str, token: str, kind: str) -> None:
    """Record a run that is about to claim entries (its host and pid, heartbeat now)."""
    _write(engine, insert(repair_run).values(run_id=run_id, token=token, kind=kind, host=socket.gethostname()[:255],
                                             pid=os.getpid(), status="running", started_at=_NOW(),
                                             heartbeat_at=_NOW()))


def beat(engine: Engine, run_id: str) -> int:
    r = repair_run
    return _write(engine, update(r).where(and_(r.c.run_id == run_id, r.c.status == "running"))
                  .values(heartbeat_at=_NOW()))


def end_run(engine: Engine, run_id: str, status: str) -> None:
    r = repair_run
    _write(engine, update(r).where(and_(r.c.run_id == run_id, r.c.status == "running"))
           .values(status=status, finished_at=_NOW()))


def mark_taken_over(engine: Engine, run_ids: Sequence[str], by: str) -> None:
    if run_ids:
        r = repair_run
        _write(engine, update(r).where(r.c.run_id.in_(list(run_ids)))
               .values(status="taken_over", taken_over_by=by, finished_at=func.coalesce(r.c.finished_at, _NOW())))


def run_status(engine: Engine, run_id: str) -> str | None:
    """The registry status of a run (running | finished | failed | taken_over), None when unregistered."""
    with engine.connect() as conn:
        value = conn.execute(select(repair_run.c.status).where(repair_run.c.run_id == run_id)).scalar()
    return str(value) if value is not None else None


# ------------------------------------------------------------ repair log

def log_repairs(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT IGNORE repair_log rows (repair_id is unique: a re-run never doubles a record)."""
    if not rows:
        return
    with engine.begin() as conn:  # the database's clock, read once: the driver then sends one multi-row INSERT
        now = conn.execute(select(_NOW())).scalar_one()
        conn.execute(insert(repair_log).prefix_with("IGNORE"),
                     [{**{c: r.get(c) for c in LOG_COLUMNS}, "created_at": now, "updated_at": now} for r in rows])


def set_log_statuses(engine: Engine, repair_ids: Sequence[str], status: str, error: str | None = None) -> None:
    """The same status (and error) for many repair_log rows, 500 per statement."""
    t = repair_log
    ids = list(repair_ids)
    for s in range(0, len(ids), 500):
        _write(engine, update(t).where(t.c.repair_id.in_(ids[s:s + 500]))
               .values(status=status, error=func.coalesce(error, t.c.error), updated_at=_NOW()))


def repairs(engine: Engine, id_or_run: str, *, with_sql: bool = True) -> list[dict[str, Any]]:
    """The repair with this id, or every repair of the run with this id (oldest first). Two indexed queries (an OR
    of the two columns scans the table); `with_sql=False` skips the long sql_text."""
    t = repair_log
    cols = [t.c.id, t.c.repair_id, t.c.run_id, t.c.pair, t.c.pk, t.c.strategy, t.c.action, t.c.side, t.c.status,
            t.c.error, t.c.created_at, t.c.sql_text if with_sql else null().label("sql_text")]
    with engine.connect() as conn:
        rows = list(conn.execute(select(*cols).where(t.c.repair_id == id_or_run)).mappings())
        rows += conn.execute(select(*cols).where(and_(t.c.run_id == id_or_run, t.c.repair_id != id_or_run))
                             .order_by(t.c.id)).mappings()
    return sorted(({str(k): v for k, v in r.items()} for r in rows), key=lambda r: int(r["id"]))


def logged_ids(engine: Engine, repair_ids: Sequence[str]) -> set[str]:
    """Which of these repair ids repair_log has (under any run)."""
    ids = list(repair_ids)
    out: set[str] = set()
    with engine.connect() as conn:
        for s in range(0, len(ids), 500):
            found = conn.execute(select(repair_log.c.repair_id).where(repair_log.c.repair_id.in_(ids[s:s + 500])))
            out |= {str(v) for v in found.scalars()}
    return out
