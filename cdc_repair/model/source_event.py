"""A source row change as the validator saw it (pure): one row of a FlatMessage with its binlog coordinates.

Why a type: the validator reads it from Kafka, the ledger stores it (column `source_event`, JSON) and the
compensating repairer reads it back to find the change in the binlog. Each used to spell the dict itself.

The JSON form is the one the ledger has always held (a FlatMessage's row slice):
`{"type", "database", "table", "es", "data": row, "old": changed columns' before-values or null, "mysqlType",
"sqlType", "binlog": {"file", "pos", "gtid"} or null, "first_binlog": … (only when known), "oversized": [...]
(only when values were replaced, see model/oversized.py)}`. Values are Canal strings (binary as ISO-8859-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cdc_repair.model.position import BinlogPosition

RowValues = dict[str, str | None]  # a row as Canal renders it: column → string, or None for SQL NULL
TYPES = ("INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where in the binlog a change's transaction starts (the tailer's `cdc-repair-binlog` record header)."""

    file: str
    pos: int
    gtid: str | None = None

    @property
    def position(self) -> BinlogPosition:
        return BinlogPosition(self.file, self.pos)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "pos": self.pos, "gtid": self.gtid}

    @classmethod
    def from_json(cls, value: Any) -> Coordinates | None:
        """Stored coordinates back (None when absent or malformed)."""
        if not isinstance(value, Mapping):
            return None
        file, pos, gtid = value.get("file"), value.get("pos"), value.get("gtid")
        if not isinstance(file, str) or not file or isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
            return None
        return cls(file, pos, gtid if isinstance(gtid, str) and gtid else None)


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One row of a source FlatMessage: Canal's `data` row and `old` (before-values of the changed columns),
    the column types, and where its transaction is in the binlog (`binlog`) and where the key's run of changes
    began (`first_binlog`, kept across later changes of the key, so compensation can revert them all)."""

    type: str  # INSERT | UPDATE | DELETE
    database: str
    table: str
    es: int  # commit time, epoch ms
    data: RowValues  # the row after the change (DELETE: the deleted row)
    old: RowValues | None = None  # UPDATE: the changed columns' values before it
    mysql_type: Mapping[str, str] | None = None
    sql_type: Mapping[str, int] | None = None
    binlog: Coordinates | None = None
    first_binlog: Coordinates | None = None
    oversized: tuple[str, ...] = ()  # columns whose values were replaced by the marker

    @property
    def before(self) -> RowValues | None:
        """The whole row before the change (`FlatMessage.before_images` for one row): None for an INSERT."""
        if self.type == "INSERT":
            return None
        return dict(self.data) if self.type == "DELETE" else {**self.data, **(self.old or {})}

    @property
    def after(self) -> RowValues | None:
        """The whole row after the change: None for a DELETE."""
        return None if self.type == "DELETE" else dict(self.data)

    @property
    def since(self) -> BinlogPosition | None:
        """Where the key's recorded run of changes begins (`first_binlog`, else this change's own `binlog`)."""
        coords = self.first_binlog or self.binlog
        return coords.position if coords is not None else None

    def at(self, binlog: Coordinates | None) -> SourceEvent:
        return replace(self, binlog=binlog)

    def following(self, previous: SourceEvent | None) -> SourceEvent:
        """This, the latest change of a key, keeping where the key's run of changes began: the oldest
        coordinates seen since the ledger entry opened. A change without coordinates (e.g. a record without
        the header) keeps the run's start; with none known at all it has no `first_binlog`."""
        first = (previous.first_binlog or previous.binlog) if previous is not None else None
        return replace(self, first_binlog=first or self.first_binlog or self.binlog)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type, "database": self.database, "table": self.table, "es": self.es, "data": self.data,
            "old": self.old, "mysqlType": self.mysql_type, "sqlType": self.sql_type,
            "binlog": self.binlog.to_json() if self.binlog is not None else None}
        if self.first_binlog is not None:
            out["first_binlog"] = self.first_binlog.to_json()
        if self.oversized:
            out["oversized"] = list(self.oversized)
        return out

    @classmethod
    def from_json(cls, value: Any) -> SourceEvent | None:
        """The stored row slice back (None when it is not one: no type or no row)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("data"), Mapping):
            return None
        events = cls.all_from_json(value)
        return events[0] if events else None

    @classmethod
    def all_from_json(cls, value: Any) -> list[SourceEvent]:
        """Every row of a stored event: the row slice the validator writes, or a whole FlatMessage (`data` a
        list of rows, `old` a list or null); [] when unreadable."""
        if not isinstance(value, Mapping):
            return []
        kind = str(value.get("type") or "").upper()
        data, old = value.get("data"), value.get("old")
        if isinstance(data, Mapping):
            data, old = [data], [old]
        if not isinstance(data, list) or kind not in TYPES:
            return []
        olds = old if isinstance(old, list) else [None] * len(data)
        es = value.get("es")
        shared = cls(kind, str(value.get("database") or ""), str(value.get("table") or ""),
                     es if isinstance(es, int) and not isinstance(es, bool) else 0, {},
                     mysql_type=_mapping(value.get("mysqlType")), sql_type=_mapping(value.get("sqlType")),
                     binlog=Coordinates.from_json(value.get("binlog")),
                     first_binlog=Coordinates.from_json(value.get("first_binlog")),
                     oversized=tuple(value.get("oversized") or ()))
        return [replace(shared, data=dict(row), old=dict(before) if isinstance(before, Mapping) else None)
                for row, before in zip(data, olds, strict=False) if isinstance(row, Mapping)]

def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None
