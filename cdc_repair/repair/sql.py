"""Statement builders for repairs, undo records and rollbacks (pure: they return `Statement`s).

Guarded single-row forms (`row_ops` picks one per action type): what `repair --print` shows, and exactly what
`repair --execute` runs (one per key, inside the batch transaction; the statement's WHERE clause is the guard, no
separate locked read):
- insert-if-absent: `INSERT INTO t (…) SELECT … FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM t WHERE key)`
- compare-and-update: `UPDATE t SET … WHERE key AND <every observed column equals its observed value>`
- compare-and-delete: `DELETE FROM t WHERE key AND <every observed column equals its observed value>`
Each affects exactly 1 row, or 0 when the row no longer holds what was observed ("guard failed, re-check").
There is no `LIMIT 1`: a key matching two rows must show as 2 affected rows (the executor then rolls back),
never silently pick one. The guard is byte-exact: text is compared as its
utf8mb4 bytes (`CAST(CONVERT(c USING utf8mb4) AS BINARY) <=> CAST('…' AS BINARY)`), never under the column's
collation, where `'Stale title'` equals `'STALE TITLE   '`; floats by the text the server renders them as (a
FLOAT never equals its own value as a double literal); other values with `<=>` (binary strings byte by byte,
integers, decimals and times by value).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cdc_repair.db.sql import Statement, placeholders, quote_columns, quote_ident, quote_table
from cdc_repair.model.keys import key_bytes_equal
from cdc_repair.repair.undo_log import INSERT_COLUMNS, SELECT_COLUMNS, UndoRecord, undo_table

Row = Mapping[str, Any]


def _eq_all(columns: Sequence[str], null_safe: bool = True) -> str:
    op = "<=>" if null_safe else "="
    return " AND ".join(f"{quote_ident(c)} {op} %s" for c in columns)


def _kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "float" if isinstance(value, float) else "value"


def _exact(column: str, kind: str) -> str:
    """`column` holds exactly a value of this kind (one %s): text by its utf8mb4 bytes, whatever the column's
    collation."""
    if kind == "text":
        return f"CAST(CONVERT({quote_ident(column)} USING utf8mb4) AS BINARY) <=> CAST(%s AS BINARY)"
    if kind == "float":  # FLOAT 0.1 is 0.100000001 as a double: compare the text the server sent us
        return f"CONCAT({quote_ident(column)}) <=> CONCAT(%s)"
    return f"{quote_ident(column)} <=> %s"


@functools.lru_cache(maxsize=1024)
def _guard_sql(key_columns: tuple[str, ...], shape: tuple[tuple[str, str], ...]) -> str:
    """The guard's SQL for a key and the observed columns' kinds (cached: one text per table and row shape,
    so a batch validates and quotes each identifier once, not once per row)."""
    return " AND ".join([_eq_all(key_columns, null_safe=False), *(_exact(c, k) for c, k in shape)])


def _guard(key: Row, observed: Row) -> tuple[str, tuple[Any, ...]]:
    """`key = … AND <each observed column exactly as observed>` (key columns too: their bytes may differ from
    the key the statement looks up under the collation), with its parameters."""
    shape = tuple((c, _kind(v)) for c, v in observed.items())
    return _guard_sql(tuple(key), shape), (*key.values(), *observed.values())


def key_in(key_columns: Sequence[str], n: int) -> str:
    """`k IN (%s, …)` or `(a, b) IN ((%s, %s), …)` for n keys."""
    if len(key_columns) == 1:
        return f"{quote_ident(key_columns[0])} IN ({placeholders(n)})"
    one = f"({placeholders(len(key_columns))})"
    return f"({quote_columns(key_columns)}) IN ({', '.join([one] * n)})"


def select_by_keys(table: str, key_columns: Sequence[str], keys: Sequence[Sequence[Any]], *,
                   for_update: bool = False, columns: Sequence[str] | None = None) -> Statement:
    cols = quote_columns(columns) if columns else "*"
    params = tuple(v for key in keys for v in key)
    lock = " FOR UPDATE" if for_update else ""
    return Statement(f"SELECT {cols} FROM {quote_table(table)} WHERE {key_in(key_columns, len(keys))}{lock}", params)


def non_unique_keys(table: str, key_columns: Sequence[str], keys: Sequence[Sequence[Any]]) -> Statement:
    """One row per key that matches several rows (grouped under the key's collation, as `key = …` compares):
    its row count is what a caller checks, so it can run in the same round trip as the writes."""
    params = tuple(v for key in keys for v in key)
    return Statement(f"SELECT 1 FROM {quote_table(table)} WHERE {key_in(key_columns, len(keys))} "
                     f"GROUP BY {quote_columns(key_columns)} HAVING COUNT(*) > 1", params)


def select_columns(table: str) -> Statement:
    schema, name = table.split(".", 1)
    return Statement("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                     "ORDER BY ORDINAL_POSITION", (schema, name))


def select_column_types(table: str) -> Statement:
    schema, name = table.split(".", 1)
    return Statement("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                     "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, name))


# ---------------------------------------------------------------- guarded single-row writes


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, cols: tuple[str, ...], key_cols: tuple[str, ...]) -> str:
    return (f"INSERT INTO {quote_table(table)} ({quote_columns(cols)}) SELECT {placeholders(len(cols))} FROM DUAL "
            f"WHERE NOT EXISTS (SELECT 1 FROM {quote_table(table)} WHERE {_eq_all(key_cols, null_safe=False)})")


@functools.lru_cache(maxsize=256)
def _update_head(table: str, cols: tuple[str, ...]) -> str:
    sets = ", ".join(f"{quote_ident(c)} = %s" for c in cols)
    return f"UPDATE {quote_table(table)} SET {sets} WHERE "


def insert_if_absent(table: str, row: Row, key: Row) -> Statement:
    return Statement(_insert_sql(table, tuple(row), tuple(key)), (*row.values(), *key.values()))


def update_guarded(table: str, values: Row, key: Row, observed: Row) -> Statement:
    where, params = _guard(key, observed)
    return Statement(_update_head(table, tuple(values)) + where, (*values.values(), *params))


def delete_guarded(table: str, key: Row, observed: Row) -> Statement:
    where, params = _guard(key, observed)
    return Statement(f"DELETE FROM {quote_table(table)} WHERE {where}", params)


# ---------------------------------------------------------------- multi-row writes (rollback)


def insert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Statement:
    one = f"({placeholders(len(columns))})"
    values = ", ".join([one] * len(rows))
    return Statement(f"INSERT INTO {quote_table(table)} ({quote_columns(columns)}) VALUES {values}",
                     tuple(v for r in rows for v in r))


def upsert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                update_columns: Sequence[str]) -> Statement:
    base = insert_rows(table, columns, rows)
    sets = ", ".join(f"{quote_ident(c)} = VALUES({quote_ident(c)})" for c in update_columns)
    return Statement(f"{base.sql} ON DUPLICATE KEY UPDATE {sets}", base.params)


def update_row(table: str, values: Row, key: Row) -> Statement:
    sets = ", ".join(f"{quote_ident(c)} = %s" for c in values)
    return Statement(f"UPDATE {quote_table(table)} SET {sets} WHERE {_eq_all(list(key), null_safe=False)} LIMIT 1",
                     (*values.values(), *key.values()))


def delete_row(table: str, key: Row) -> Statement:
    return Statement(f"DELETE FROM {quote_table(table)} WHERE {_eq_all(list(key), null_safe=False)} LIMIT 1",
                     tuple(key.values()))


# ---------------------------------------------------------------- undo log


def insert_undo(records: Sequence[UndoRecord]) -> Statement:
    """One multi-row INSERT of undo records (all in the same database)."""
    schema = records[0].schema
    one = f"({placeholders(len(INSERT_COLUMNS))}, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
    sql = (f"INSERT INTO {undo_table(schema)} ({quote_columns(INSERT_COLUMNS)}, `log_created`, `log_modified`) "
           f"VALUES {', '.join([one] * len(records))}")
    return Statement(sql, tuple(v for r in records for v in r.to_params()))


def delete_undo(records: Sequence[UndoRecord]) -> Statement:
    """Drop undo records written first (the marker) whose row writes then changed nothing: one statement through
    the unique key (FORCE INDEX: see `set_undo_after_images`). All in one database, with one branch id."""
    schema, branch = records[0].schema, records[0].branch_id
    if any(r.schema != schema or r.branch_id != branch for r in records):
        raise ValueError("delete_undo: records of one database and one branch id only")
    table = undo_table(schema)
    return Statement(f"DELETE {table} FROM {table} FORCE INDEX (`ux_undo_log`) WHERE `xid` IN "
                     f"({placeholders(len(records))}) AND `branch_id` = %s", (*(r.xid for r in records), branch))


def set_undo_after_images(records: Sequence[UndoRecord]) -> Statement:
    """Fill the after-images of undo records inserted before their rows were written (the marker comes first
    in a repair transaction): one `CASE xid` UPDATE through the unique key. FORCE INDEX: on a small undo_log
    the optimizer prefers a table scan, which locks the other batches' fresh undo rows (deadlocks between
    concurrent batches, measured); through the unique key only these records are locked."""
    schema = records[0].schema
    arms = " ".join(["WHEN %s THEN %s"] * len(records))
    params: list[Any] = []
    for r in records:
        params += [r.xid, r.image_param(r.after)]
    params += [r.xid for r in records]
    return Statement(f"UPDATE {undo_table(schema)} FORCE INDEX (`ux_undo_log`) SET `after_image` = CASE `xid` "
                     f"{arms} END WHERE `xid` IN ({placeholders(len(records))}) AND `branch_id` = 1", tuple(params))


def select_undo(schema: str, xid: str, *, for_update: bool = False) -> Statement:
    lock = " FOR UPDATE" if for_update else ""
    return Statement(f"SELECT {quote_columns(SELECT_COLUMNS)} FROM {undo_table(schema)} WHERE `xid` = %s "
                     f"ORDER BY `branch_id`{lock}", (xid,))


def select_undo_for_row(schema: str, table: str, pk: str, since: dt.datetime | None) -> Statement:
    """The undo records of one row, newest first (optionally only those created since a time)."""
    extra, params = ("", (table, pk)) if since is None else (" AND `log_created` >= %s", (table, pk, since))
    return Statement(f"SELECT {quote_columns(SELECT_COLUMNS)} FROM {undo_table(schema)} WHERE `table_name` = %s "
                     f"AND `pk` = %s{extra} ORDER BY `log_created` DESC", params)


def mark_undone(schema: str, xid: str, branch_id: int) -> Statement:
    return Statement(f"UPDATE {undo_table(schema)} SET `log_status` = 1, `log_modified` = UTC_TIMESTAMP(6) "
                     f"WHERE `xid` = %s AND `branch_id` = %s AND `log_status` = 0", (xid, branch_id))


# ---------------------------------------------------------------- rollback


def restore_statement(record: UndoRecord, *, force: bool = False) -> Statement | None:
    """The statement that puts the before-image back (Seata's undo executors), on the written columns only:
    INSERT undone by DELETE, DELETE undone by INSERT of the whole before-row, UPDATE undone by UPDATE."""
    key = {c: (record.before or record.after or {}).get(c) for c in record.key_columns}
    before, after = record.before, record.after
    if before is None and after is not None:
        return delete_row(record.table, key)
    if before is not None and after is None:
        cols = list(before)
        if force:  # the row may exist again: overwrite it with the before-image
            return upsert_rows(record.table, cols, [[before[c] for c in cols]],
                               [c for c in cols if c not in record.key_columns])
        return insert_rows(record.table, cols, [[before[c] for c in cols]])
    if before is not None and after is not None:
        values = {c: before.get(c) for c in record.columns if c not in record.key_columns}
        # a key the repair re-spelled ('KEY10' -> 'key10') gets its old bytes back, set last
        values.update({c: before.get(c) for c in record.key_columns if c in record.columns
                       and not key_bytes_equal(before.get(c), after.get(c))})
        if not values:
            return None
        if force:  # the row may be gone: put the before-row back whole
            cols = list(before)
            return upsert_rows(record.table, cols, [[before[c] for c in cols]], list(values))
        return update_row(record.table, values, key)
    return None


# ---------------------------------------------------------------- rendering (for --print and logs)


def literal(value: Any) -> str:
    """A MySQL literal for a parameter value (strings escaped like mysql_real_escape_string)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):  # a DOUBLE literal, as PyMySQL sends it: `15.0` alone is a DECIMAL ('15.0' in
        text = repr(value)        # CONCAT, where the column gives '15'), so a printed float guard would never match
        return text if "e" in text or not math.isfinite(value) else text + "e0"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return "_binary" + _quote(data.decode("utf-8"))
        except UnicodeDecodeError:
            return "X'" + data.hex() + "'"
    if isinstance(value, dt.datetime):
        return "'" + value.isoformat(sep=" ") + "'"
    if isinstance(value, (dt.date, dt.timedelta)):
        return "'" + str(value) + "'"
    return _quote(str(value))


_ESCAPES = str.maketrans({"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"',
                          "\\": "\\\\"})


def _quote(text: str) -> str:
    return "'" + text.translate(_ESCAPES) + "'"


def render(stmt: Statement) -> str:
    """The statement with its parameters inlined as literals, ending in `;` (copy-paste runnable)."""
    parts = stmt.sql.split("%s")
    if len(parts) - 1 != len(stmt.params):
        raise ValueError(f"statement has {len(parts) - 1} placeholders but {len(stmt.params)} parameters")
    out = [parts[0]]
    for value, rest in zip(stmt.params, parts[1:], strict=True):
        out.append(literal(value))
        out.append(rest)
    return "".join(out) + ";"
