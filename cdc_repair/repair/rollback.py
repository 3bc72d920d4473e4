"""Roll back repairs from their undo records, Seata AT phase-2 style (I/O around the pure dirty check).

`rollback(id)`: the id is a repair id (one row write) or a run id (every repair of the run). Repairs are undone
newest first. Per repair, in the row's database, one local transaction:
1. `SELECT … FROM undo_log WHERE xid = ? FOR UPDATE`; a record already undone (`log_status = 1`) → skip
   (rollback is idempotent);
2. `SELECT … FOR UPDATE` of the current row; `guard.dirty_check(current, before, after, columns)` on the
   columns the repair wrote:
   - current == after-image → restore the before-image (DELETE for an insert, INSERT for a delete, UPDATE of
     the written columns otherwise), write an undo record for the rollback itself (xid = the rollback's id,
     strategy `rollback`: rolling *that* back re-applies the repair), mark the original `log_status = 1`;
   - current == before-image → already undone: only mark it;
   - anything else → **dirty**: nothing is written, the three images are reported, repair_log says `dirty`
     and the rollback stops there (an operator decides). `force=True` restores the before-image anyway
     (upsert of the before-row), logged at WARNING and recorded as `forced`.
`dry_run` reports the decisions without writing. If the repair_log has no row for the id (the repairer
died before writing it), the undo_log tables of every configured pair are searched for the xid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import Settings, TableRef
from cdc_repair.db import mysql
from cdc_repair.errors import CdcRepairError
from cdc_repair.metrics import ROLLBACKS
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.executor import RowServer
from cdc_repair.repair.guard import UndoDecision, differing_columns, dirty_check
from cdc_repair.repair.store import StateStore, new_id
from cdc_repair.repair.undo_log import LogStatus, UndoRecord, plain_row, record_from_row

log = logging.getLogger(__name__)

# outcomes
UNDONE = "undone"
SKIPPED = "skipped"  # already undone, or the repair changed nothing
DIRTY = "dirty"
FORCED = "forced"
WOULD_UNDO = "would_undo"  # dry run
MISSING = "missing"  # no undo record found
NOT_RUN = "not_run"  # after a dirty stop


@dataclass
class RollbackItem:
    repair_id: str
    pair: str | None
    table: str | None
    pk: str | None
    outcome: str
    detail: str = ""
    rollback_id: str | None = None
    images: dict[str, Any] = field(default_factory=dict)  # before / after / current (dirty and dry runs)
    columns: list[str] = field(default_factory=list)
    sql: str | None = None  # the restore statement that ran

    def to_json(self) -> dict[str, Any]:
        return {"repair_id": self.repair_id, "pair": self.pair, "table": self.table, "pk": self.pk,
                "outcome": self.outcome, "detail": self.detail, "rollback_id": self.rollback_id,
                "columns": self.columns, "images": self.images, "sql": self.sql}


@dataclass
class RollbackReport:
    target_id: str
    dry_run: bool
    force: bool
    items: list[RollbackItem] = field(default_factory=list)

    @property
    def dirty(self) -> list[RollbackItem]:
        return [i for i in self.items if i.outcome == DIRTY]

    @property
    def exit_code(self) -> int:
        if any(i.outcome == MISSING for i in self.items) and not any(i.outcome != MISSING for i in self.items):
            return 1
        return 2 if self.dirty else 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.target_id, "dry_run": self.dry_run, "force": self.force,
                "items": [i.to_json() for i in self.items]}


@dataclass(frozen=True, slots=True)
class _Located:
    repair_id: str
    pair: str | None
    server: str
    schema: str
    table: str | None
    pk: str | None
    side: str = "target"


def rollback(settings: Settings, store: StateStore, target_id: str, *, dry_run: bool = False,
             force: bool = False) -> RollbackReport:
    """Undo the repair (or run) `target_id` newest first; see the module docstring."""
    report = RollbackReport(target_id, dry_run, force)
    located = _locate(settings, store, target_id)
    if not located:
        report.items.append(RollbackItem(target_id, None, None, None, MISSING,
                                         f"no repair or run with id '{target_id}' in repair_log or any undo_log "
                                         f"(see `cdc-repair status` or repair_log for ids)"))
        return report
    servers: dict[str, RowServer] = {}
    try:
        stopped = False
        for loc in reversed(located):
            if stopped:
                report.items.append(RollbackItem(loc.repair_id, loc.pair, loc.table, loc.pk, NOT_RUN,
                                                 "not attempted: an earlier (newer) rollback was dirty"))
                continue
            server = servers.setdefault(loc.server, RowServer(loc.server, settings.server_dsn(loc.server)))
            item = _rollback_one(server, loc, dry_run=dry_run, force=force)
            report.items.append(item)
            ROLLBACKS.labels(item.outcome).inc()
            if not dry_run:
                _record(store, loc, item)
            if item.outcome == DIRTY:
                log.error("rollback of %s refused: %s %s is dirty: %s (the three images are in the report)",
                          loc.repair_id, item.table, item.pk, item.detail)
                stopped = True
    finally:
        for s in servers.values():
            s.close()
    return report


def _locate(settings: Settings, store: StateStore, target_id: str) -> list[_Located]:
    """Where each repair of `target_id` lives (oldest first): from repair_log, else by searching undo_logs."""
    pairs = {p.name: p for p in settings.pairs}
    out = []
    for row in store.repairs(target_id):
        if row.status == "failed":
            continue  # the write was rolled back by the database: nothing to undo
        pair = pairs.get(row.pair)
        if pair is None:
            raise CdcRepairError(f"repair {row.repair_id} belongs to pair '{row.pair}', which is not in the config "
                                 f"(add the pair back to roll it back)")
        ref: TableRef = pair.target if row.side == "target" else pair.source
        out.append(_Located(row.repair_id, row.pair, ref.server, ref.schema_name, ref.table, row.pk, row.side))
    if out:
        return out
    for pair in settings.pairs:  # the repairer may have died before writing repair_log
        for side, ref in (("target", pair.target), ("source", pair.source)):
            server = RowServer(ref.server, settings.server_dsn(ref.server))
            try:
                rows = mysql.fetch_dicts(server.conn, rsql.select_undo(ref.schema_name, target_id))
            except Exception:
                rows = []
            finally:
                server.close()
            for r in rows:
                if r["table_name"] == ref.table:
                    return [_Located(target_id, pair.name, ref.server, ref.schema_name, ref.table, str(r["pk"]),
                                     side)]
    return []


def _rollback_one(server: RowServer, loc: _Located, *, dry_run: bool, force: bool) -> RollbackItem:
    item = RollbackItem(loc.repair_id, loc.pair, loc.table, loc.pk, MISSING)
    conn = server.conn
    try:
        with mysql.transaction(conn):
            rows = mysql.fetch_dicts(conn, rsql.select_undo(loc.schema, loc.repair_id, for_update=True))
            if not rows:
                item.detail = f"no undo record for {loc.repair_id} in {loc.schema}.undo_log"
                return item
            record = record_from_row(rows[0])
            item.table, item.pk, item.columns = record.table, record.pk, list(record.columns)
            if record.status is not LogStatus.NORMAL:
                item.outcome, item.detail = SKIPPED, "already rolled back (undo record is marked undone)"
                return item
            key = {c: (record.before or record.after or {}).get(c) for c in record.key_columns}
            current_rows = server.read(record.table, list(key), [list(key.values())], for_update=True)
            current = next(iter(current_rows.values()), None)
            decision = dirty_check(current, record.before, record.after, record.columns)
            item.images = {"before": plain_row(record.before), "after": plain_row(record.after),
                           "current": plain_row(current)}
            if decision is UndoDecision.DIRTY:
                changed = differing_columns(current, record.after, record.columns)
                item.detail = (f"row changed since the repair (columns {', '.join(changed)} differ from the "
                               f"after-image): re-run with --force to restore the before-image anyway")
                if not force:
                    item.outcome = DIRTY  # nothing written: the transaction only held the row locks
                    return item
            if dry_run:
                item.outcome = {UndoDecision.UNDO: WOULD_UNDO, UndoDecision.DIRTY: FORCED}.get(decision, SKIPPED)
                item.detail = item.detail or _describe(decision)
                return item
            if decision in (UndoDecision.ALREADY_UNDONE, UndoDecision.NO_CHANGE):
                mysql.execute(conn, rsql.mark_undone(loc.schema, record.xid, record.branch_id))
                item.outcome, item.detail = SKIPPED, _describe(decision)
                return item
            item.rollback_id = new_id("rb")
            item.sql = _restore(server, record, current, item.rollback_id, force=decision is UndoDecision.DIRTY)
            mysql.execute(conn, rsql.mark_undone(loc.schema, record.xid, record.branch_id))
            if decision is UndoDecision.DIRTY:
                item.outcome = FORCED
                log.warning("rollback of %s FORCED on a dirty row %s %s: before-image restored over it (%s)",
                            loc.repair_id, record.table, record.pk, item.detail.split(":")[0])
            else:
                item.outcome, item.detail = UNDONE, "before-image restored"
    except CdcRepairError:
        raise
    except Exception as exc:
        server.reset()
        raise mysql.classify(exc, f"rollback of {loc.repair_id}") from exc
    return item


def _restore(server: RowServer, record: UndoRecord, current: Mapping[str, Any] | None, rollback_id: str, *,
             force: bool) -> str | None:
    """Write the before-image back and record the rollback's own undo record (same transaction)."""
    stmt = rsql.restore_statement(record, force=force)
    if stmt is not None:
        mysql.execute(server.conn, stmt)
    key = {c: (record.before or record.after or {}).get(c) for c in record.key_columns}
    restored = next(iter(server.read(record.table, list(key), [list(key.values())]).values()), None)
    sql_type = {"INSERT": "DELETE", "DELETE": "INSERT"}.get(record.sql_type, "UPDATE")
    undo = UndoRecord(xid=rollback_id, branch_id=1, table=record.table, pk=record.pk, sql_type=sql_type,
                      strategy="rollback", columns=record.columns, key_columns=record.key_columns,
                      before=current, after=restored, column_types=server.column_types(record.table))
    mysql.execute(server.conn, rsql.insert_undo([undo]))
    return rsql.render(stmt) if stmt is not None else None


def _record(store: StateStore, loc: _Located, item: RollbackItem) -> None:
    """repair_log: the original's status (rolled_back / dirty), and a row for the rollback itself."""
    if item.outcome in (UNDONE, FORCED):
        store.set_log_status(loc.repair_id, "rolled_back", f"rolled back by {item.rollback_id}"
                             + (" (FORCED over a dirty row)" if item.outcome == FORCED else ""))
        store.log_repairs([{"repair_id": item.rollback_id, "run_id": item.rollback_id, "pair": loc.pair or "",
                            "pk": item.pk or "", "strategy": "rollback", "action": "rollback",
                            "side": loc.side, "status": "forced" if item.outcome == FORCED else "applied",
                            "sql_text": f"-- rollback of {loc.repair_id}\n{item.sql or ''}",
                            "error": item.detail or None}])
    elif item.outcome == DIRTY:
        store.set_log_status(loc.repair_id, "dirty", f"rollback refused (needs an operator): {item.detail}")
    elif item.outcome == SKIPPED and loc.pair is not None:
        store.set_log_status(loc.repair_id, "rolled_back")


def _describe(decision: UndoDecision) -> str:
    return {UndoDecision.UNDO: "current row equals the after-image: the before-image would be restored",
            UndoDecision.ALREADY_UNDONE: "current row already equals the before-image (already undone)",
            UndoDecision.NO_CHANGE: "the repair changed nothing",
            UndoDecision.DIRTY: "dirty row: --force would restore the before-image over it"}[decision]
