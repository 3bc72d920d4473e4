"""Undo a chunk of repairs of one database in one local transaction (I/O around the pure dirty check).

Why batched: one transaction and two state writes per repair ran at ~150 rows/s (a 20,000-repair run took two
minutes, a 1M-row mistake would take hours). Per chunk (≤ `CHUNK` repairs, one database, no row twice):
1. `SELECT … FROM undo_log WHERE xid IN (…) FOR UPDATE`: the records; one already undone → `skipped`;
2. per table, `SELECT … WHERE key IN (…) FOR UPDATE`: the current rows; Seata's dirty check per record on the
   columns the repair wrote (current == after → undo; == before → already undone; else dirty);
3. the restores, batched: one DELETE … IN for undone inserts, one multi-row INSERT per column set for undone
   deletes, one CASE-UPDATE per column set and 100 rows for undone updates (forced ones row by row, as an upsert);
4. one re-read of the restored rows, one multi-row INSERT of the rollbacks' own undo records (strategy
   `rollback`, each with its own `rb-…` id, context naming the rollback run), one UPDATE marking the originals
   undone; COMMIT.
The transaction runs at READ COMMITTED (`locking.py`). Exactness is unchanged: the same typed before-image
values are written, the dirty check is the same, and a record marked undone is never undone twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, placeholders, quote_columns, quote_ident, quote_table
from cdc_repair.model.keys import pk_string
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.executor import RowServer
from cdc_repair.repair.guard import UndoDecision, differing_columns, dirty_check
from cdc_repair.repair.store import new_id
from cdc_repair.repair.undo_log import SELECT_COLUMNS, UndoRecord, plain_row, record_from_row, undo_table

CHUNK = 500
# rows per CASE-UPDATE: the server evaluates the CASE arm by arm for every row (rows x arms per statement), so a
# 500-arm CASE over a whole chunk cost 5x the comparisons of five 100-arm ones
CASE_ROWS = 100

Row = Mapping[str, Any]


@dataclass
class Undo:
    """One repair to undo, and what happened to it (the caller turns it into a report item)."""

    repair_id: str
    outcome: str = "missing"  # undone | skipped | dirty | forced | would_undo | missing | not_run
    detail: str = ""
    record: UndoRecord | None = None
    rollback_id: str | None = None
    images: dict[str, Any] = field(default_factory=dict)
    sql: str | None = None


def undo_chunk(server: RowServer, schema: str, undos: Sequence[Undo], *, rollback_run: str, dry_run: bool,
               force: bool, stop_at_dirty: bool) -> bool:
    """Undo `undos` (newest first, each row at most once) in one transaction; True when a dirty row stopped it
    (`stop_at_dirty`: the undos after it are `not_run`, the ones before it are undone)."""
    conn = server.conn
    with mysql.transaction(conn):
        records = _lock_records(conn, schema, [u.repair_id for u in undos])
        todo: list[Undo] = []
        for u in undos:
            u.record = records.get(u.repair_id)
            if u.record is None:
                u.detail = f"no undo record for {u.repair_id} in {schema}.undo_log"
            elif u.record.status != 0:
                u.outcome, u.detail = "skipped", "already rolled back (undo record is marked undone)"
            else:
                todo.append(u)
        current = _lock_rows(server, [u.record for u in todo if u.record is not None])
        stopped = _decide(todo, current, dry_run=dry_run, force=force, stop_at_dirty=stop_at_dirty)
        if not dry_run:
            _write(server, schema, [u for u in todo if u.outcome in ("undone", "forced", "skipped")], current,
                   rollback_run)
    return stopped


def _lock_records(conn: mysql.Connection, schema: str, xids: Sequence[str]) -> dict[str, UndoRecord]:
    stmt = Statement(f"SELECT {quote_columns(SELECT_COLUMNS)} FROM {undo_table(schema)} "
                     f"WHERE `xid` IN ({placeholders(len(xids))}) AND `branch_id` = 1 FOR UPDATE", tuple(xids))
    return {str(r["xid"]): record_from_row(r) for r in mysql.fetch_dicts(conn, stmt)}


def _key(record: UndoRecord) -> list[Any]:
    image = record.before or record.after or {}
    return [image.get(c) for c in record.key_columns]


def _lock_rows(server: RowServer, records: Sequence[UndoRecord], *, lock: bool = True) -> dict[str, Row | None]:
    """The current row of each record's key, by xid (locked)."""
    by_table: dict[tuple[str, tuple[str, ...]], list[UndoRecord]] = {}
    for r in records:
        by_table.setdefault((r.table, r.key_columns), []).append(r)
    out: dict[str, Row | None] = {}
    for (table, key_cols), group in by_table.items():
        rows = server.read(table, list(key_cols), [_key(r) for r in group], for_update=lock)
        for r in group:  # by the key asked for: a re-spelled key's record names the row by its online bytes
            out[r.xid] = rows.get(pk_string(_key(r)), rows.get(r.pk))
    return out


def _decide(todo: Sequence[Undo], current: Mapping[str, Row | None], *, dry_run: bool, force: bool,
            stop_at_dirty: bool) -> bool:
    for n, u in enumerate(todo):
        rec = u.record
        assert rec is not None
        now = current.get(rec.xid)
        decision = dirty_check(now, rec.before, rec.after, rec.columns)
        if decision is UndoDecision.DIRTY:
            u.images = {"before": plain_row(rec.before), "after": plain_row(rec.after), "current": plain_row(now)}
            changed = differing_columns(now, rec.after, rec.columns)
            u.detail = (f"row changed since the repair (columns {', '.join(changed)} differ from the after-image): "
                        f"re-run with --force to restore the before-image anyway")
            if not force:
                u.outcome = "dirty"
                if stop_at_dirty:
                    for rest in todo[n + 1:]:
                        rest.outcome, rest.detail = "not_run", "not attempted: an earlier (newer) rollback was dirty"
                    return True
                continue
        if dry_run:
            u.outcome = {UndoDecision.UNDO: "would_undo", UndoDecision.DIRTY: "forced"}.get(decision, "skipped")
            u.detail = u.detail or _describe(decision)
            u.images = {"before": plain_row(rec.before), "after": plain_row(rec.after), "current": plain_row(now)}
        elif decision in (UndoDecision.ALREADY_UNDONE, UndoDecision.NO_CHANGE):
            u.outcome, u.detail = "skipped", _describe(decision)
        elif decision is UndoDecision.DIRTY:
            u.outcome = "forced"
        else:
            u.outcome, u.detail = "undone", "before-image restored"
    return False


def _write(server: RowServer, schema: str, undos: Sequence[Undo], current: Mapping[str, Row | None],
           rollback_run: str) -> None:
    """Restore, record the rollbacks' own undo records (after-images re-read), mark the originals undone (inside
    the transaction). The restores come before any undo_log row on purpose: a rollback is not tagged as the
    service's own write in the stream (see docs/repair.md), it re-creates the difference and the validator may
    see it; the rollback also reopens the ledger itself."""
    conn = server.conn
    restoring = [u for u in undos if u.outcome in ("undone", "forced")]
    for stmt in restore_statements([u.record for u in restoring if u.outcome == "undone" and u.record]):
        mysql.execute(conn, stmt)
    for u in restoring:
        assert u.record is not None
        if u.outcome == "forced":
            forced = rsql.restore_statement(u.record, force=True)
            if forced is not None:
                mysql.execute(conn, forced)
                u.sql = rsql.render(forced)
        else:
            u.sql = _describe_restore(u.record)
    if restoring:
        restored = _lock_rows(server, [u.record for u in restoring if u.record], lock=False)
        records = []
        for u in restoring:
            rec = u.record
            assert rec is not None
            u.rollback_id = new_id("rb")
            records.append(UndoRecord(
                xid=u.rollback_id, branch_id=1, table=rec.table, pk=rec.pk,
                sql_type={"INSERT": "DELETE", "DELETE": "INSERT"}.get(rec.sql_type, "UPDATE"), strategy="rollback",
                columns=rec.columns, key_columns=rec.key_columns, before=current.get(rec.xid),
                after=restored.get(rec.xid), column_types=server.column_types(rec.table), run_id=rollback_run))
        for start in range(0, len(records), 100):  # images can be large: bounded statements
            mysql.execute(conn, rsql.insert_undo(records[start:start + 100]))
    xids = [u.repair_id for u in undos]
    if xids:
        mysql.execute(conn, Statement(
            f"UPDATE {undo_table(schema)} SET `log_status` = 1, `log_modified` = UTC_TIMESTAMP(6) "
            f"WHERE `xid` IN ({placeholders(len(xids))}) AND `branch_id` = 1 AND `log_status` = 0", tuple(xids)))


def restore_statements(records: Sequence[UndoRecord]) -> list[Statement]:
    """The batched restores (pure): DELETE … IN for inserts, INSERT per column set for deletes, CASE-UPDATE per
    column set and CASE_ROWS records for updates; records of several tables give statements per table."""
    stmts: list[Statement] = []
    by_table: dict[tuple[str, tuple[str, ...]], list[UndoRecord]] = {}
    for r in records:
        by_table.setdefault((r.table, r.key_columns), []).append(r)
    for (table, key_cols), group in by_table.items():
        deletes = [_key(r) for r in group if r.before is None and r.after is not None]
        if deletes:
            stmts.append(Statement(f"DELETE FROM {quote_table(table)} WHERE {rsql.key_in(key_cols, len(deletes))}",
                                   tuple(v for k in deletes for v in k)))
        inserts: dict[tuple[str, ...], list[list[Any]]] = {}
        updates: dict[tuple[str, ...], list[UndoRecord]] = {}
        for r in group:
            if r.before is not None and r.after is None:
                inserts.setdefault(tuple(r.before), []).append(list(r.before.values()))
            elif r.before is not None and r.after is not None and _respelled(r):
                one = rsql.restore_statement(r)  # the key's old bytes come back too: its own statement
                if one is not None:
                    stmts.append(one)
            elif r.before is not None and r.after is not None:
                cols = tuple(c for c in r.columns if c not in key_cols)
                if cols:
                    updates.setdefault(cols, []).append(r)
        stmts += [rsql.insert_rows(table, cols, rows) for cols, rows in inserts.items()]
        stmts += [_case_update(table, key_cols, cols, recs[start:start + CASE_ROWS])
                  for cols, recs in updates.items() for start in range(0, len(recs), CASE_ROWS)]
    return stmts


def _respelled(record: UndoRecord) -> bool:
    """The repair changed the key's bytes (a key spelled otherwise online, 'KEY10' -> 'key10')."""
    before, after = record.before or {}, record.after or {}
    return pk_string([before.get(c) for c in record.key_columns]) != pk_string(
        [after.get(c) for c in record.key_columns])


def _case_update(table: str, key_cols: Sequence[str], columns: Sequence[str],
                 records: Sequence[UndoRecord]) -> Statement:
    """`UPDATE t SET c = CASE WHEN key = … THEN <before value> … END, … WHERE key IN (…)`."""
    if len(key_cols) == 1:
        when = f"{quote_ident(key_cols[0])} = %s"
    else:
        when = "(" + ", ".join(quote_ident(k) for k in key_cols) + ") = (" + placeholders(len(key_cols)) + ")"
    sets: list[str] = []
    params: list[Any] = []
    for col in columns:
        sets.append(f"{quote_ident(col)} = CASE {' '.join([f'WHEN {when} THEN %s'] * len(records))} END")
        for r in records:
            assert r.before is not None
            params += [*_key(r), r.before.get(col)]
    params += [v for r in records for v in _key(r)]
    return Statement(f"UPDATE {quote_table(table)} SET {', '.join(sets)} WHERE {rsql.key_in(key_cols, len(records))}",
                     tuple(params))


def _describe_restore(record: UndoRecord) -> str:
    """What the restore did, in SQL words without the values (repair_log.sql_text is for humans; the values are
    the before-image in the undo record)."""
    key = " AND ".join(f"{c} = {rsql.literal(v)}" for c, v in zip(record.key_columns, _key(record), strict=True))
    if record.before is None:
        return f"DELETE FROM {record.table} WHERE {key} -- the repair inserted it"
    if record.after is None:
        return f"INSERT INTO {record.table} ({', '.join(record.before)}) -- the before-image of {key}"
    cols = ", ".join(c for c in record.columns if c not in record.key_columns)
    return f"UPDATE {record.table} SET {cols} WHERE {key} -- to the before-image"


def _describe(decision: UndoDecision) -> str:
    return {UndoDecision.UNDO: "current row equals the after-image: the before-image would be restored",
            UndoDecision.ALREADY_UNDONE: "current row already equals the before-image (already undone)",
            UndoDecision.NO_CHANGE: "the repair changed nothing",
            UndoDecision.DIRTY: "dirty row: --force would restore the before-image over it"}[decision]
