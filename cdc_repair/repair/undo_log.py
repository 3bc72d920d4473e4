"""The AT undo log (pure): records, their typed JSON images, and the table's DDL.

Like Seata's `undo_log` (research/at.md §1.1), one table per business database, written in the same local
transaction as the row it undoes, unique on (xid, branch_id), indexed on log_created for cleanup. Differences,
on purpose: the images are plain columns (`before_image`, `after_image`, seata-go style JSON) instead of one
serialized blob, so an operator can read them with SQL; `table_name`, `pk`, `sql_type` and `columns` (the
columns the write set, which the dirty check compares) are columns too; a rolled-back record is kept with
`log_status=1` instead of being deleted, so rollback stays idempotent and auditable.

Image JSON: `{"tableName": "db.t", "rows": [{"fields": [{"name", "type", "sqlType", "keyType", "value"}]}]}`; an
absent row is `rows: []`. `sqlType` is the column's SQL type (`bigint(20)`, `blob`, `datetime(6)`: what the
column was when the image was taken); `type` is the Python value type the driver returned (int, decimal, float,
str, bytes (base64), bytes_utf8 (bytes that are valid UTF-8, stored as text), datetime, date, time, null), so a
restore writes back exactly the same value.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any

import orjson

from cdc_repair.db.sql import quote_ident

UNDO_TABLE = "undo_log"
CONTEXT = "serializer=json&compressorType=NONE"


class LogStatus(IntEnum):
    NORMAL = 0  # applied; can be undone
    UNDONE = 1  # rolled back (Seata: GlobalFinished / defense status)


def run_context(run_id: str) -> str:
    """The `context` of the undo records a run writes: the undo log names the run of every change, so the run's
    record survives a run that died before writing its repair_log rows (see `repair/runs.py`)."""
    return f"{CONTEXT}&run={run_id}"


def undo_table(schema: str) -> str:
    """The quoted undo_log table of a database: `schema`.`undo_log`."""
    return f"{quote_ident(schema)}.{quote_ident(UNDO_TABLE)}"


def ddl(schema: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {undo_table(schema)} (
  `branch_id`    BIGINT        NOT NULL COMMENT 'branch within the repair (1 = the row write)',
  `xid`          VARCHAR(128)  NOT NULL COMMENT 'repair id (repair_log.repair_id)',
  `context`      VARCHAR(128)  NOT NULL COMMENT 'serializer=json&compressorType=NONE',
  `table_name`   VARCHAR(192)  NOT NULL COMMENT 'schema.table of the row',
  `pk`           VARCHAR(768)  NOT NULL COMMENT 'JSON array of key values as strings',
  `sql_type`     VARCHAR(16)   NOT NULL COMMENT 'INSERT | UPDATE | DELETE (the repair write)',
  `strategy`     VARCHAR(16)   NOT NULL COMMENT 'forward | compensate | rollback',
  `columns`      TEXT          NOT NULL COMMENT 'JSON list of columns the write set (dirty check compares these)',
  `before_image` LONGBLOB      NOT NULL COMMENT 'typed JSON row image before the write',
  `after_image`  LONGBLOB      NOT NULL COMMENT 'typed JSON row image after the write',
  `log_status`   INT           NOT NULL COMMENT '0: normal (undoable), 1: undone',
  `log_created`  DATETIME(6)   NOT NULL,
  `log_modified` DATETIME(6)   NOT NULL,
  UNIQUE KEY `ux_undo_log` (`xid`, `branch_id`),
  KEY `ix_log_created` (`log_created`),
  KEY `ix_undo_row` (`table_name`, `pk`(255))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='cdc-repair AT undo log'"""


# ---------------------------------------------------------------- typed values


def encode_value(value: Any) -> tuple[str, Any]:
    """(type tag, JSON-safe value) for a driver value."""
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return "int", int(value)
    if isinstance(value, int):
        return "int", value
    if isinstance(value, Decimal):
        return "decimal", str(value)
    if isinstance(value, float):
        return "float", value
    if isinstance(value, str):
        return "str", value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:  # readable and a third smaller than base64 when the bytes are UTF-8 text (the usual BLOB body)
            return "bytes_utf8", data.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes", base64.b64encode(data).decode("ascii")
    if isinstance(value, dt.datetime):
        return "datetime", value.isoformat()
    if isinstance(value, dt.date):
        return "date", value.isoformat()
    if isinstance(value, dt.timedelta):
        return "time", value.total_seconds()
    if isinstance(value, set):
        return "set", sorted(value)
    return "str", str(value)


_DECODERS: dict[str, Any] = {
    "int": int,
    "decimal": Decimal,
    "float": float,
    "str": str,
    "bytes": lambda v: base64.b64decode(v),
    "bytes_utf8": lambda v: str(v).encode("utf-8"),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": lambda v: dt.timedelta(seconds=float(v)),
    "set": lambda v: set(v),
}


def decode_value(tag: str, raw: Any) -> Any:
    if raw is None or tag == "null":
        return None
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"undo image: unknown value type {tag!r}")
    return decoder(raw)


def encode_image(table: str, row: Mapping[str, Any] | None, key_columns: Sequence[str],
                 column_types: Mapping[str, str] | None = None) -> bytes:
    rows = []
    if row is not None:
        fields = []
        for name, value in row.items():
            tag, raw = encode_value(value)
            field: dict[str, Any] = {"name": name, "type": tag,
                                     "keyType": "PRIMARY_KEY" if name in key_columns else "NULL", "value": raw}
            if column_types and name in column_types:
                field["sqlType"] = column_types[name]
            fields.append(field)
        rows.append({"fields": fields})
    return orjson.dumps({"tableName": table, "rows": rows})


def same_image(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """`a` and `b` encode to the same image (same columns in the same order, same value types, same values, a
    DECIMAL's scale and a float's text included), without encoding either: the repair checks every undo record's
    after-image against the re-read row this way."""
    if a is None or b is None:
        return a is None and b is None
    if list(a) != list(b) or a != b or list(map(type, a.values())) != list(map(type, b.values())):
        return False
    return all(str(v) == str(b[k]) for k, v in a.items() if isinstance(v, (Decimal, float)))


def decode_image(blob: bytes | str) -> dict[str, Any] | None:
    doc = orjson.loads(blob)
    rows = doc.get("rows") or []
    if not rows:
        return None
    return {f["name"]: decode_value(f["type"], f["value"]) for f in rows[0]["fields"]}


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class UndoRecord:
    """One undo_log row: the images of one row write, in the database of that row."""

    xid: str
    branch_id: int
    table: str  # schema.table
    pk: str
    sql_type: str  # INSERT | UPDATE | DELETE
    strategy: str
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    status: LogStatus = LogStatus.NORMAL
    created: dt.datetime | None = None
    modified: dt.datetime | None = None
    column_types: Mapping[str, str] | None = None  # SQL column types, written into the images as `sqlType`
    run_id: str | None = None  # the run that wrote it, kept in `context` (`…&run=<id>`): the run's record

    @property
    def context(self) -> str:
        return run_context(self.run_id) if self.run_id else CONTEXT

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    def to_params(self) -> tuple[Any, ...]:
        """Values for INSERT_COLUMNS (timestamps are set by the server: NOW(6)). The images go as bytes: the
        driver sends them as hex, twice their size, but escaping them as text costs this process more (measured)."""
        return (self.branch_id, self.xid, self.context, self.table, self.pk, self.sql_type, self.strategy,
                orjson.dumps({"columns": list(self.columns), "key": list(self.key_columns)}).decode(),
                self.image_param(self.before), self.image_param(self.after), int(self.status))

    def image_param(self, row: Mapping[str, Any] | None) -> bytes:
        """An image of `row` (this record's before or after) as the statement parameter (see `to_params`)."""
        return encode_image(self.table, row, self.key_columns, self.column_types)

    def images_json(self) -> dict[str, Any]:
        """The before/after images as plain JSON (for reports)."""
        return {"before": _plain(self.before), "after": _plain(self.after)}


INSERT_COLUMNS = ("branch_id", "xid", "context", "table_name", "pk", "sql_type", "strategy", "columns",
                  "before_image", "after_image", "log_status")
SELECT_COLUMNS = (*INSERT_COLUMNS, "log_created", "log_modified")


def record_from_row(row: Mapping[str, Any]) -> UndoRecord:
    cols = orjson.loads(row["columns"])
    return UndoRecord(
        xid=str(row["xid"]), branch_id=int(row["branch_id"]), table=str(row["table_name"]), pk=str(row["pk"]),
        sql_type=str(row["sql_type"]), strategy=str(row["strategy"]), columns=tuple(cols["columns"]),
        key_columns=tuple(cols["key"]), before=decode_image(row["before_image"]),
        after=decode_image(row["after_image"]), status=LogStatus(int(row["log_status"])),
        created=row.get("log_created"), modified=row.get("log_modified"), run_id=_run_of(row.get("context")))


def _run_of(context: Any) -> str | None:
    text = context.decode() if isinstance(context, (bytes, bytearray)) else str(context or "")
    _, sep, run = text.partition("&run=")
    return run if sep else None


def _plain(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, (bytes, bytearray)):
            try:
                out[name] = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                out[name] = "0x" + bytes(value).hex()
        elif isinstance(value, (Decimal, dt.date, dt.timedelta)):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def plain_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A row with bytes as text (or 0x-hex) and dates as strings: for JSON reports and messages."""
    return _plain(row)
