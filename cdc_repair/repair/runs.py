"""Repair runs and their claims: a heartbeat per run, who holds `repairing` entries, and taking over the dead.

Why: a run that dies mid-repair (kill -9, its state DB connection lost, its host gone) leaves its ledger entries
`repairing`. Waiting `repair.claim_timeout_s` (300 s) with a re-run saying "nothing to do" hid them; taking
claims over blindly would let two live runs repair the same keys. So every run that claims entries registers in
the state table `repair_run` (run id, claim token, host, pid) and beats a heartbeat every `dead_after_s / 6`.

A holder of claims is judged (`judge`, pure) **dead** when:
- its run ended (finished, failed or already taken over) without giving its claims back;
- it runs on this host and its process no longer exists (known at once, e.g. after kill -9);
- its heartbeat is older than `repair.dead_after_s` (its host or process is gone or frozen);
- it is not registered (a worker of an older version) and its claim is older than `repair.claim_timeout_s`.
Claims of a dead holder are taken over by the next claim, with a WARNING naming the run. A holder that is not
known dead keeps its entries: the re-run reports each as `left`, "claimed by run X (pid P on host H, last
heartbeat S s ago)", and exits 2. `repair --execute --take-over X` takes X's claims now (the operator knows the
host is gone), except when X runs on this host (then its process is alive: stop it first).

Taking over is safe even if the holder still writes: every row write is guarded (locked, compared with what its
plan observed) and the ledger's close/fail updates are guarded by the claim token, so a late writer can neither
overwrite the taker's repair nor its ledger result.

Taking over a dead run also completes its repair_log: every undo record names the run that wrote it
(`context … &run=<id>`, committed with the row), so the records the dead run applied but never logged get their
repair_log rows, under that run's id (`rollback <run>` then undoes all of it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import RepairConfig, Settings, TableRef
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement, quote_columns
from cdc_repair.errors import CdcRepairError
from cdc_repair.model.ledger import LedgerFilter as Filters
from cdc_repair.repair.store import StateStore
from cdc_repair.repair.undo_log import run_context, undo_table

log = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED, TAKEN_OVER = "running", "finished", "failed", "taken_over"


@dataclass(frozen=True, slots=True)
class Holder:
    """One claim token holding `repairing` entries, with its run's registry row (None fields: unregistered)."""

    token: str
    entries: int
    claim_age_s: float
    run_id: str | None = None
    host: str | None = None
    pid: int | None = None
    status: str | None = None
    heartbeat_age_s: float | None = None
    started_at: Any = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Holder:
        def num(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(token=str(row["token"]), entries=int(row["entries"]), claim_age_s=num(row["claim_age_s"]) or 0.0,
                   run_id=row.get("run_id"), host=row.get("host"),
                   pid=None if row.get("pid") is None else int(row["pid"]), status=row.get("status"),
                   heartbeat_age_s=num(row.get("heartbeat_age_s")), started_at=row.get("started_at"))

    @property
    def name(self) -> str:
        """What `--take-over` accepts: the run id, else the token."""
        return self.run_id or self.token

    def describe(self) -> str:
        if self.run_id is None:
            return f"worker {self.token} (no heartbeat record; claimed {self.claim_age_s:.0f} s ago)"
        return (f"run {self.run_id} (pid {self.pid} on host {self.host}, last heartbeat "
                f"{self.heartbeat_age_s or 0:.0f} s ago)")


def judge(holder: Holder, *, host: str, alive: Callable[[int], bool], dead_after_s: float,
          claim_timeout_s: float) -> str | None:
    """Why `holder` is known dead, or None when it may be alive (see the module docstring)."""
    if holder.run_id is None:
        if holder.claim_age_s > claim_timeout_s:
            return f"its claims are {holder.claim_age_s:.0f} s old (repair.claim_timeout_s {claim_timeout_s:g})"
        return None
    if holder.status != RUNNING:
        return f"the run is {holder.status}"
    if holder.host == host and holder.pid is not None and not alive(holder.pid):
        return f"its process {holder.pid} on this host is gone"
    if holder.heartbeat_age_s is None or holder.heartbeat_age_s > dead_after_s:
        return f"no heartbeat for {holder.heartbeat_age_s or 0:.0f} s (repair.dead_after_s {dead_after_s:g})"
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a recycled pid reads as alive: the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Handover:
    """The holders of entries a run wants: dead ones (with why) are taken over, live ones are left to them."""

    dead: list[tuple[Holder, str]] = field(default_factory=list)
    live: list[Holder] = field(default_factory=list)

    @property
    def tokens(self) -> list[str]:
        return [h.token for h, _ in self.dead]


def hand_over(store: StateStore, filters: Filters, token: str, cfg: RepairConfig,
              take_over: Sequence[str] = ()) -> Handover:
    """Judge every other holder of entries matching `filters`; `take_over` names runs (or tokens) the operator
    declares dead. Naming a run whose process is alive on this host is refused (one line)."""
    out = Handover()
    host = socket.gethostname()
    for row in store.holders(filters, token):
        holder = Holder.from_row(row)
        why = judge(holder, host=host, alive=pid_alive, dead_after_s=cfg.dead_after_s,
                    claim_timeout_s=cfg.claim_timeout_s)
        if why is None and holder.name in take_over:
            if holder.host == host and holder.pid is not None and pid_alive(holder.pid):
                raise CdcRepairError(f"--take-over {holder.name}: that run is still running as pid {holder.pid} on "
                                     f"this host; stop it first (kill {holder.pid}), then re-run")
            why = "taken over on request (--take-over)"
        if why is None:
            out.live.append(holder)
        else:
            out.dead.append((holder, why))
    return out


def held_reason(holder: Holder) -> str:
    return (f"claimed by {holder.describe()}; left to it. If that run is dead: "
            f"cdc-repair repair --execute --take-over {holder.name}")


class Heartbeat:
    """Registers a run and beats its heartbeat on a thread with its own state connection until `stop`."""

    def __init__(self, dsn: Dsn, run_id: str, token: str, kind: str, cfg: RepairConfig) -> None:
        self.run_id = run_id
        self._store = StateStore(dsn, create_schema=False)
        self._interval = max(0.2, cfg.dead_after_s / 6)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store.register_run(run_id, token, kind)

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self._store.beat(self.run_id)
                failing = False
            except CdcRepairError as exc:  # the state DB is away: other runs may judge this one dead
                if not failing:
                    log.warning("run %s: heartbeat not written (%s); after repair.dead_after_s other runs may "
                                "take over its claims (its writes stay guarded)", self.run_id, exc)
                failing = True

    def stop(self, status: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self._store.end_run(self.run_id, status)
        except CdcRepairError as exc:
            log.warning("run %s: could not record its end (%s)", self.run_id, exc)
        finally:
            self._store.close()


def take_over_dead(settings: Settings, store: StateStore, handover: Handover, by_run: str) -> None:
    """Log and record the take-over of dead holders, completing each dead run's repair_log first."""
    for holder, why in handover.dead:
        log.warning("taking over %d claimed entries of %s: %s", holder.entries, holder.describe(), why)
        if holder.run_id is not None:
            added = backfill_repair_log(settings, store, holder.run_id, holder.started_at)
            if added:
                log.warning("run %s died before logging %d applied repairs: added to repair_log from the undo log",
                            holder.run_id, added)
    store.mark_taken_over([h.run_id for h, _ in handover.dead if h.run_id], by_run)


def backfill_repair_log(settings: Settings, store: StateStore, run_id: str, since: Any = None, *,
                        known: set[str] | None = None) -> int:
    """Add the repair_log rows of `run_id`'s undo records that have none (INSERT IGNORE on repair_id)."""
    missing = unlogged_repairs(settings, store, run_id, since, known=known)
    for start in range(0, len(missing), 500):
        store.log_repairs(missing[start:start + 500])
    return len(missing)


def unlogged_repairs(settings: Settings, store: StateStore, run_id: str, since: Any = None, *,
                     known: set[str] | None = None) -> list[dict[str, Any]]:
    """The repair_log rows `run_id` should have from its undo records but has not (oldest first)."""
    rows: list[dict[str, Any]] = []
    for server, schema, refs in _undo_schemas(settings):
        for rec in _undo_of_run(settings, server, schema, run_id, since):
            hit = refs.get(str(rec["table_name"]))
            if hit is None or rec["strategy"] == "rollback":
                continue
            pair, side = hit
            rows.append({"repair_id": str(rec["xid"]), "run_id": run_id, "pair": pair, "pk": str(rec["pk"]),
                         "strategy": str(rec["strategy"]), "action": str(rec["sql_type"]).lower(), "side": side,
                         "status": "applied", "sql_text": None,
                         "error": "recorded from the undo log: the run stopped before logging it"})
    if known is None:
        known = {r.repair_id for r in store.repairs(run_id, with_sql=False)}
    rows = [r for r in rows if r["repair_id"] not in known]
    logged = store.logged_ids([r["repair_id"] for r in rows])  # e.g. recovered by a later run, under its id
    return [r for r in rows if r["repair_id"] not in logged]


def _undo_schemas(settings: Settings) -> Iterable[tuple[str, str, dict[str, tuple[str, str]]]]:
    """(server, schema, {table: (pair, side)}) for every database that holds repaired rows."""
    out: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for pair in settings.pairs:
        for side, ref in (("target", pair.target), ("source", pair.source)):
            r: TableRef = ref
            out.setdefault((r.server, r.schema_name), {})[r.table] = (pair.name, side)
    return [(server, schema, refs) for (server, schema), refs in out.items()]


def _undo_of_run(settings: Settings, server: str, schema: str, run_id: str, since: Any) -> list[dict[str, Any]]:
    where = "`context` = %s" + (" AND `log_created` >= %s - INTERVAL 1 HOUR" if since is not None else "")
    params: tuple[Any, ...] = (run_context(run_id),) + ((since,) if since is not None else ())
    stmt = Statement(f"SELECT {quote_columns(('xid', 'table_name', 'pk', 'sql_type', 'strategy'))} "
                     f"FROM {undo_table(schema)} WHERE {where} ORDER BY `log_created`", params)
    conn = mysql.connect(settings.server_dsn(server))
    try:
        return mysql.fetch_dicts(conn, stmt)
    except Exception as exc:
        err = mysql.classify(exc, f"undo log of {schema}")
        if "1146" in str(err):  # no undo_log in that database: nothing was repaired there
            return []
        raise err from exc
    finally:
        with contextlib.suppress(Exception):
            conn.close()
