"""Apply guarded row writes with their undo records, one local transaction per batch (I/O adapter).

Per batch (all actions on one table), in one transaction and one round trip: the batch's undo records first
(in the binlog they mark the transaction as the service's own write, DESIGN invariant 5, source/origin.py;
before-image = the row the plan observed), a check that no key of the batch matches several rows
(`sql.non_unique_keys`; if one does, the batch rolls back), and each row written by its own guarded statement,
the very statement `repair --print` shows (`row_ops.py`). The guard is a compare-and-set in the
write's own WHERE clause (byte-exact compare of every observed column) and needs no separate locked read: the
statement locks and compares the newest committed row, so a concurrent write is never overwritten, and a write
that affected its row replaced exactly the observed row (hence the before-image). Each statement must affect
exactly one row (0: the row changed or the write would change nothing → `guard_failed`, its undo record is
deleted again, the caller re-checks; more: the key is not unique → the batch rolls back). Then the written rows
are re-read (the after-images, Seata style) and checked against the after-images the records were inserted
with (the observed row with the written values): only records the server stored otherwise (a default, padding,
a trigger) get their after-image set, with one UPDATE; then COMMIT. If
the batch fails, it is rolled back and retried row by row, so one bad row never loses the others; a key
matching several rows fails alone and its ledger entry is parked at once (`Failed.park`: retrying cannot help).

Test seam: `crash_point(name)` calls the hooks in `CRASH_HOOKS` (none in production). Tests install one
(`cdc_repair_dev/crashing_cli.py`) that kills the process right after the row transaction commits, before
anything is written to the state DB, to prove a re-run neither loses nor doubles the repair.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement
from cdc_repair.errors import CdcRepairError, TerminalError
from cdc_repair.model.keys import pk_string, rows_by_requested_key
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import RepairAction
from cdc_repair.repair.locking import use_read_committed
from cdc_repair.repair.row_ops import executor_for, guarded_statement
from cdc_repair.repair.undo_log import UNDO_TABLE, UndoRecord, ddl, same_image

log = logging.getLogger(__name__)

Row = dict[str, Any]
CRASH_HOOKS: list[Callable[[str], None]] = []  # test seam: called with each crash point's name


@dataclass(frozen=True, slots=True)
class Applied:
    action: RepairAction
    xid: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class GuardFailed:
    action: RepairAction
    current: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Failed:
    action: RepairAction
    error: str
    transient: bool
    xid: str  # the id the write would have had (repair_log keeps the failed attempt under it)
    park: bool = False  # retrying cannot help (a key matching several rows): park the ledger entry at once


Outcome = Applied | GuardFailed | Failed


def crash_point(name: str) -> None:
    """Call the test hooks at this point of the write path (see module docstring)."""
    for hook in CRASH_HOOKS:
        hook(name)


class RowServer:
    """One MySQL server holding repaired rows: a lazily opened connection, column and undo-table caches."""

    def __init__(self, name: str, dsn: Dsn) -> None:
        self.name = name
        self.dsn = dsn
        self._conn: mysql.Connection | None = None
        self._columns: dict[str, list[str]] = {}
        self._types: dict[str, dict[str, str]] = {}
        self._undo_ready: set[str] = set()
        self._busy_checked_at = 0.0
        self._threads_running = 0

    @property
    def conn(self) -> mysql.Connection:
        if self._conn is None:
            conn = mysql.connect(self.dsn, multi_statements=True)  # a batch's writes in one round trip
            use_read_committed(conn, self.name)  # no gap locks: concurrent batches cannot deadlock (locking.py)
            self._conn = conn
        return self._conn

    def reset(self) -> None:
        """Drop the connection (after a lost connection or an aborted transaction)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.reset()

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            cols = [str(r[0]) for r in mysql.fetch_all(self.conn, rsql.select_columns(table))]
            if not cols:
                raise CdcRepairError(f"table {table} not found on server '{self.name}' ({self.dsn.masked()})")
            self._columns[table] = cols
        return self._columns[table]

    def column_types(self, table: str) -> dict[str, str]:
        """Column name → SQL column type (`bigint(20)`, `blob`, …), for undo images and binary detection."""
        if table not in self._types:
            rows = mysql.fetch_all(self.conn, rsql.select_column_types(table))
            self._types[table] = {str(r[0]): _text(r[2]) for r in rows}
        return self._types[table]

    def binary_columns(self, table: str) -> set[str]:
        """Columns holding raw bytes (BLOB/BINARY/VARBINARY/BIT): their FlatMessage text is ISO-8859-1."""
        return {c for c, t in self.column_types(table).items()
                if any(k in t.lower() for k in ("blob", "binary", "bit("))}

    def ensure_undo_table(self, schema: str) -> None:
        """CREATE TABLE IF NOT EXISTS `schema`.undo_log, once per connection (DDL commits: never inside a
        repair). An existing table is only looked up, so a user without CREATE works once a DBA created it."""
        if schema not in self._undo_ready:
            exists = mysql.fetch_one(self.conn, Statement(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (schema, UNDO_TABLE)))
            if exists is None:
                try:
                    mysql.execute(self.conn, Statement(ddl(schema)))
                except mysql.DriverError as exc:
                    raise TerminalError(
                        f"{mysql.classify(exc, f'cannot create the undo log {schema}.{UNDO_TABLE}')}; GRANT CREATE "
                        f"ON {schema}.{UNDO_TABLE} to the repair user, or have a DBA create it (docs/repair.md)"
                    ) from None
            self._undo_ready.add(schema)

    def read(self, table: str, key_columns: Sequence[str], keys: Sequence[Sequence[Any]], *,
             for_update: bool = False) -> dict[str, Row]:
        """Rows by canonical pk (SELECT *), optionally locked."""
        out: dict[str, Row] = {}

        def fetch(batch: Sequence[Sequence[Any]]) -> list[Row]:
            return mysql.fetch_dicts(self.conn, rsql.select_by_keys(table, key_columns, batch, for_update=for_update))

        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = fetch(chunk)
            if len(key_columns) == 1 and all(type(r[key_columns[0]]) is int for r in rows):
                k = key_columns[0]
                out.update((f'["{r[k]}"]', r) for r in rows)  # pk_string of an int key, without json.dumps
            else:  # string keys: the server's collation may answer a key with a row whose key is not byte-equal
                wanted = {pk_string(key): key for key in chunk}
                out.update(rows_by_requested_key(key_columns, wanted, rows, fetch))
        return out

    def threads_running(self, max_age_s: float = 1.0) -> int:
        """The server's Threads_running (cached for `max_age_s`)."""
        now = time.monotonic()
        if now - self._busy_checked_at >= max_age_s:
            row = mysql.fetch_one(self.conn, Statement("SHOW GLOBAL STATUS LIKE 'Threads_running'"))
            self._threads_running = int(row[1]) if row else 0
            self._busy_checked_at = now
        return self._threads_running


def apply_batch(server: RowServer, actions: Sequence[RepairAction], xids: Sequence[str], *,
                after_lock: Callable[[], None] | None = None, run_id: str | None = None) -> list[Outcome]:
    """Apply guarded actions on one table in one transaction (row-by-row fallback on error). `after_lock` (a
    test hook) runs inside the transaction just before the batch's round trip of undo records and guarded writes
    (there is no separate lock step any more: the writes lock and compare their rows themselves)."""
    if not actions:
        return []
    server.ensure_undo_table(actions[0].schema)
    try:
        return _apply(server, actions, xids, after_lock, run_id)
    except Exception as exc:
        err = mysql.classify(exc, f"repair batch on {actions[0].table}")
        not_unique = isinstance(exc, KeyNotUnique)
        log.warning("repair batch of %d rows on %s failed (%s); retrying row by row", len(actions),
                    actions[0].table, err)
        server.reset()
    if len(actions) == 1:
        return [Failed(actions[0], str(err), _transient(err), xids[0], park=not_unique)]
    out: list[Outcome] = []
    for action, xid in zip(actions, xids, strict=True):
        try:
            out.extend(_apply(server, [action], [xid], after_lock, run_id))
        except Exception as exc:
            one = mysql.classify(exc, f"repair of {action.table} {action.pk}")
            server.reset()
            out.append(Failed(action, str(one), _transient(one), xid, park=isinstance(exc, KeyNotUnique)))
    return out


def _text(value: Any) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _transient(err: Exception) -> bool:
    from cdc_repair.errors import TransientError

    return isinstance(err, TransientError)


class KeyNotUnique(TerminalError):
    """A key matched more than one row: the write is rolled back and the key needs an operator."""


def _apply(server: RowServer, actions: Sequence[RepairAction], xids: Sequence[str],
           after_lock: Callable[[], None] | None, run_id: str | None = None) -> list[Outcome]:
    first = actions[0]
    table = first.table
    key_cols = [k for k, _ in first.key]
    conn = server.conn
    results: list[Outcome] = []
    with mysql.transaction(conn):
        if after_lock is not None:
            after_lock()
        types = server.column_types(table)
        # before = the observed row: a write that affects its row replaced exactly that (the guard compares it
        # all); after = the row the write should leave, checked against the re-read row below
        records = {xid: UndoRecord(
            xid=xid, branch_id=1, table=table, pk=action.pk, sql_type=action.op.value.upper(),
            strategy=action.strategy.value, columns=tuple(action.written_columns), key_columns=tuple(key_cols),
            before=action.observed, after=executor_for(action).expected_after(action, server.columns(table)),
            column_types=types,
            run_id=run_id)
            for action, xid in zip(actions, xids, strict=True)}
        passed: list[tuple[RepairAction, str]] = []
        refused: list[UndoRecord] = []
        for action, xid, affected in zip(actions, xids, _write(conn, actions, list(records.values())), strict=True):
            if affected == 1:  # the compare-and-set held
                passed.append((action, xid))
            else:  # 0: the row changed since it was read, or the write would change nothing; no undo record
                results.append(GuardFailed(action, None))
                refused.append(records.pop(xid))
        if refused:
            mysql.execute(conn, rsql.delete_undo(refused))
        if passed:
            written = [[v for _, v in a.key] for a, _ in passed if executor_for(a).leaves_row]
            after = server.read(table, key_cols, written) if written else {}
            for action, xid in passed:
                post = after.get(action.pk) if executor_for(action).leaves_row else None
                results.append(Applied(action, xid, records[xid].before, post))
            finals = [replace(r, after=after.get(r.pk)) for r in records.values()
                      if r.sql_type != "DELETE" and not same_image(r.after, after.get(r.pk))]
            if finals:  # the server stored something else (a default, padding, a trigger, a type conversion)
                mysql.execute(conn, rsql.set_undo_after_images(finals))
    if passed:
        crash_point("after_row_commit")
    return results


def _write(conn: mysql.Connection, actions: Sequence[RepairAction], records: Sequence[UndoRecord]) -> list[int]:
    """In one round trip: the undo records (first: in the binlog they mark the transaction as the service's own
    write, DESIGN invariant 5, source/origin.py; their after-images are checked once the rows are re-read), a check
    that no key of the batch matches several rows, and the actions' guarded statements (the ones `--print`
    shows); returns each statement's affected rows. A key matching several rows raises (the transaction rolls
    back, the batch is retried row by row, which names the key): the byte-exact guard alone would let a write
    change one of two rows under the same key."""
    first = actions[0]
    key_cols = [k for k, _ in first.key]
    check = rsql.non_unique_keys(first.table, key_cols, [[v for _, v in a.key] for a in actions])
    _, not_unique, *counts = mysql.execute_each(
        conn, [rsql.insert_undo(records), check, *(guarded_statement(a) for a in actions)])
    for action, affected in zip(actions, counts, strict=True):
        if affected > 1:
            raise KeyNotUnique(f"{action.describe()}: the guarded write affected {affected} rows where 1 was "
                               f"expected: the key is not unique; rolled back (give {action.table} a PRIMARY or NOT "
                               f"NULL UNIQUE key and remove the duplicates)")
    if not_unique:
        what = f"{', '.join(key_cols)} = {', '.join(str(v) for _, v in first.key)}" if len(actions) == 1 else \
            f"({', '.join(key_cols)}) of this batch"
        raise KeyNotUnique(f"key {what} matched more than one row of {first.table}: the key is not unique; "
                           f"nothing written (give the table a PRIMARY or NOT NULL UNIQUE key on "
                           f"{', '.join(key_cols)} and remove the duplicates)")
    return counts
