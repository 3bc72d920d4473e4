"""Canal FlatMessage codec (pure): encode to JSON bytes and parse strictly back.

Wire format, field for field as Canal writes it (alphabetical, nulls included):
`data, database, es, gtid, id, isDdl, mysqlType, old, pkNames, sql, sqlType, table, ts, type`.

* Column values are strings or null (DECIMAL plain, DATETIME `YYYY-MM-DD HH:MM:SS[.ffffff]`, binary as
  ISO-8859-1 text, ENUM its index, SET its bitmask, FLOAT/DOUBLE as Java prints them). `data` is a **list**: one
  message may carry several rows of one table and type (all in the same Kafka partition, in binlog order, and by
  default all of one transaction). Consumers must handle multi-row messages.
* `gtid`, `id`, `es` name the transaction whose rows the message holds (see sink/grouping.py).
* UPDATE: `old[i]` holds only the columns of `data[i]` that changed (their before-values).
* DELETE: `data` is the deleted row; `old` is null. INSERT: `old` is null.
* DDL: `isDdl` true, `type` CREATE/ALTER/ERASE/TRUNCATE/RENAME/CINDEX/DINDEX/QUERY, `sql` the statement,
  `data`/`old`/`mysqlType`/`sqlType`/`pkNames` null.

`parse_flat_message` is strict: anything that is not such a message raises `MalformedMessageError` with a
one-line reason (the validator sends those to the dead-letter topic). Unknown extra keys are tolerated
(Canal versions add fields), missing `gtid` (Canal < 1.1.7) reads as "".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cdc_repair.errors import MalformedMessageError

Row = dict[str, str | None]

DML_TYPES = frozenset({"INSERT", "UPDATE", "DELETE"})
DDL_TYPES = frozenset({"CREATE", "ALTER", "ERASE", "TRUNCATE", "RENAME", "CINDEX", "DINDEX", "QUERY"})
FIELDS = ("data", "database", "es", "gtid", "id", "isDdl", "mysqlType", "old", "pkNames", "sql", "sqlType",
          "table", "ts", "type")


@dataclass(frozen=True, slots=True)
class FlatMessage:
    """One Canal FlatMessage. `data`/`old` are lists of rows (column → string or None)."""

    database: str
    table: str
    type: str
    data: list[Row] | None
    old: list[Row] | None = None
    pk_names: list[str] | None = None
    mysql_type: dict[str, str] | None = None
    sql_type: dict[str, int] | None = None
    is_ddl: bool = False
    sql: str = ""
    es: int = 0  # event (commit) time, epoch ms
    ts: int = 0  # time the message was built, epoch ms
    id: int = 0  # batch id (not unique per message, as in Canal)
    gtid: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data, "database": self.database, "es": self.es, "gtid": self.gtid, "id": self.id,
            "isDdl": self.is_ddl, "mysqlType": self.mysql_type, "old": self.old, "pkNames": self.pk_names,
            "sql": self.sql, "sqlType": self.sql_type, "table": self.table, "ts": self.ts, "type": self.type,
        }

    def pk_values(self) -> list[tuple[str | None, ...]]:
        """The primary-key values of every `data` row, in order (empty when there is no PK or no data)."""
        if not self.data or not self.pk_names:
            return []
        names = self.pk_names
        return [tuple(row.get(n) for n in names) for row in self.data]

    keys = pk_values  # alias

    def before_images(self) -> list[Row]:
        """Full before-image of each row: UPDATE → data overlaid with old; DELETE → data; INSERT → none."""
        if not self.data or self.type == "INSERT":
            return []
        if self.type == "DELETE":
            return [dict(r) for r in self.data]
        olds = self.old or [{} for _ in self.data]
        return [{**row, **old} for row, old in zip(self.data, olds, strict=True)]


def encode_flat_message(msg: FlatMessage) -> bytes:
    """The message as Canal JSON bytes (keys in Canal's alphabetical order, nulls written)."""
    return orjson.dumps(msg.to_dict())


def encode_fields(fields: Mapping[str, Any]) -> bytes:
    """Fast path for the tailer: a dict already keyed with the 14 wire names, in order."""
    return orjson.dumps(fields)


def dml_fields(*, database: str, table: str, kind: str, rows: list[Row], olds: list[Row] | None,
               pk_names: list[str] | None, mysql_type: dict[str, str], sql_type: dict[str, int], es: int, ts: int,
               id: int, gtid: str) -> dict[str, Any]:
    """One INSERT/UPDATE/DELETE message as the dict `orjson.dumps` writes in Canal's field order (the tailer's hot
    path: no dataclass in between)."""
    return {
        "data": rows, "database": database, "es": es, "gtid": gtid, "id": id, "isDdl": False,
        "mysqlType": mysql_type, "old": olds, "pkNames": pk_names, "sql": "", "sqlType": sql_type, "table": table,
        "ts": ts, "type": kind,
    }


def encode_dml(*, database: str, table: str, kind: str, rows: list[Row], olds: list[Row] | None,
               pk_names: list[str] | None, mysql_type: dict[str, str], sql_type: dict[str, int], es: int, ts: int,
               id: int, gtid: str) -> bytes:
    """`dml_fields` as Canal JSON bytes."""
    return orjson.dumps(dml_fields(database=database, table=table, kind=kind, rows=rows, olds=olds,
                                   pk_names=pk_names, mysql_type=mysql_type, sql_type=sql_type, es=es, ts=ts, id=id,
                                   gtid=gtid))


def encode_ddl(*, database: str, table: str, kind: str, sql: str, es: int, ts: int, id: int,
               gtid: str) -> bytes:
    """One DDL message (`isDdl` true; data, old, mysqlType, sqlType and pkNames null) as Canal JSON bytes."""
    return orjson.dumps({
        "data": None, "database": database, "es": es, "gtid": gtid, "id": id, "isDdl": True, "mysqlType": None,
        "old": None, "pkNames": None, "sql": sql, "sqlType": None, "table": table, "ts": ts, "type": kind,
    })


def widened_sql_type(sql_type: dict[str, int], unsigned_ints: Sequence[tuple[int, str, int, int]],
                     rows: list[Row]) -> dict[str, int]:
    """Canal widens an unsigned integer column's sqlType when a value exceeds the signed maximum.
    `unsigned_ints`: (index, name, signed maximum, wider code) of each unsigned integer column."""
    if not unsigned_ints:
        return sql_type
    widened: dict[str, int] | None = None
    for _i, name, limit, code in unsigned_ints:
        for row in rows:
            value = row.get(name)
            if value is not None and int(value) > limit:
                widened = widened or dict(sql_type)
                widened[name] = code
                break
    return widened or sql_type


def image_rows(names: tuple[str, ...], images: list[tuple[str | None, ...]]) -> list[Row]:
    """INSERT/DELETE row images (values in column order) as `data` rows."""
    return [dict(zip(names, image, strict=True)) for image in images]


def update_rows(names: tuple[str, ...], images: list[tuple[str | None, ...]]) -> tuple[list[Row], list[Row]]:
    """UPDATE images (before, after, before, after, ...) as `data` (after) and `old` (changed columns only)."""
    rows: list[Row] = []
    olds: list[Row] = []
    for j in range(0, len(images), 2):
        before, after = images[j], images[j + 1]
        rows.append(dict(zip(names, after, strict=True)))
        olds.append({n: b for n, b, a in zip(names, before, after, strict=True) if b != a})
    return rows, olds


# ---------------------------------------------------------------- strict parsing


def _fail(reason: str) -> MalformedMessageError:
    return MalformedMessageError(f"not a Canal FlatMessage: {reason}")


def _str(doc: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise _fail(f"'{key}' must be a string (got {type(value).__name__})")
    return value


def _int(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"'{key}' must be an integer (got {type(value).__name__})")
    return value


def _rows(value: Any, key: str) -> list[Row] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(f"'{key}' must be a list of rows or null (got {type(value).__name__})")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise _fail(f"'{key}[{i}]' must be an object of column values")
        for col, v in row.items():
            if v is not None and not isinstance(v, str):
                raise _fail(f"'{key}[{i}].{col}' must be a string or null (got {type(v).__name__})")
    return value


def _str_map(value: Any, key: str, kind: type) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"'{key}' must be an object or null")
    for col, v in value.items():
        if isinstance(v, bool) or not isinstance(v, kind):
            raise _fail(f"'{key}.{col}' must be {'an integer' if kind is int else 'a string'}")
    return value


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise _fail("'pkNames' must be a list of column names or null")
    return value


def parse_flat_message(raw: bytes | bytearray | memoryview | str) -> FlatMessage:
    """Parse and check one FlatMessage; raise `MalformedMessageError` naming the first problem."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(f"top level must be a JSON object (got {type(doc).__name__})")
    missing = [f for f in FIELDS if f not in doc and f != "gtid"]
    if missing:
        raise _fail(f"missing field(s) {', '.join(missing)}")
    is_ddl = doc["isDdl"]
    if not isinstance(is_ddl, bool):
        raise _fail("'isDdl' must be true or false")
    kind = _str(doc, "type")
    msg = FlatMessage(
        database=_str(doc, "database"), table=_str(doc, "table"), type=kind,
        data=_rows(doc["data"], "data"), old=_rows(doc["old"], "old"), pk_names=_names(doc["pkNames"]),
        mysql_type=_str_map(doc["mysqlType"], "mysqlType", str), sql_type=_str_map(doc["sqlType"], "sqlType", int),
        is_ddl=is_ddl, sql=_str(doc, "sql"), es=_int(doc, "es"), ts=_int(doc, "ts"), id=_int(doc, "id"),
        gtid=_str(doc, "gtid", default=""),
    )
    _check_shape(msg)
    return msg


def _check_shape(msg: FlatMessage) -> None:
    if msg.is_ddl:
        if msg.type in DML_TYPES:
            raise _fail(f"isDdl is true but type is {msg.type}")
        return
    if msg.type not in DML_TYPES:
        return  # Canal also emits non-DML, non-DDL entries (e.g. QUERY for rows_query events); data may be null
    if not msg.data:
        raise _fail(f"{msg.type} message without 'data' rows")
    if not msg.table:
        raise _fail(f"{msg.type} message without 'table'")
    if msg.type == "UPDATE":
        if msg.old is None or len(msg.old) != len(msg.data):
            raise _fail("UPDATE 'old' must be a list aligned with 'data'")
    elif msg.old is not None and msg.type == "INSERT" and len(msg.old) not in (0, len(msg.data)):
        raise _fail("INSERT 'old' must be null")
    if msg.pk_names:
        for i, row in enumerate(msg.data):
            absent = [n for n in msg.pk_names if n not in row]
            if absent:
                raise _fail(f"'data[{i}]' lacks primary-key column(s) {', '.join(absent)}")

