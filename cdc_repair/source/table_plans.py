"""From the library's TableMap to our compiled row plans (no library import: its objects are read by attribute).

The TableMap with FULL metadata names every column, its signedness, charset and the primary key; this module
turns that into a pure `TableSchema` and compiles a `RowDecoder` per table id. The cache is tied to the
library's Table object: when the library re-parses a TableMap (new binlog file, or after a DDL cleared its
map) the plan is recompiled, so ALTER TABLE mid-stream is followed from the binlog, never from
information_schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cdc_repair.errors import SchemaDriftError
from cdc_repair.model.schema import ColumnSpec, TableSchema
from cdc_repair.source import types as T
from cdc_repair.source.decoder import JsonDecoder, RowDecoder

log = logging.getLogger(__name__)

TableFilter = Callable[[str, str], bool]


def column_spec(col: Any) -> ColumnSpec:
    """Library Column (TableMap + FULL optional metadata) → our pure ColumnSpec."""
    t = int(col.type)
    charset = getattr(col, "character_set_name", None)
    binary = charset in (None, "binary") and t in (T.VARCHAR, T.VAR_STRING, T.STRING, T.BLOB, T.GEOMETRY)
    if t == T.GEOMETRY or charset == "binary":
        binary = True
    codec = None if binary or charset is None else ("utf-8" if charset in ("utf8", "utf8mb4") else charset)
    if t in (T.VARCHAR, T.VAR_STRING, T.STRING, T.BLOB) and charset is None:
        codec, binary = None, True
    values = tuple(getattr(col, "enum_values", None) or ())[1:] if t == T.ENUM else tuple(
        getattr(col, "set_values", None) or ())
    params: dict[str, Any] = {
        "max_length": int(getattr(col, "max_length", 0) or 0),
        "length_size": int(getattr(col, "length_size", 0) or 0),
        "precision": int(getattr(col, "precision", 0) or 0),
        "decimals": int(getattr(col, "decimals", 0) or 0),
        "fsp": int(getattr(col, "fsp", 0) or 0),
        "bits": int(getattr(col, "bits", 0) or 0),
        "size": int(getattr(col, "size", 0) or 0),
    }
    unsigned = bool(col.unsigned)
    mysql_type = T.mysql_type_name(t, unsigned=unsigned, binary=binary, values=values,
                                   collation=getattr(col, "collation_name", None), **params)
    return ColumnSpec(name=str(col.name), type_code=t, mysql_type=mysql_type,
                      sql_type=T.java_sql_type(t, binary=binary), unsigned=unsigned, is_pk=bool(col.is_primary),
                      charset=codec, values=values, **params)


def table_schema(table: Any) -> TableSchema:
    cols = tuple(column_spec(c) for c in table.columns)
    if any(not c.name or c.name.startswith("UNKNOWN_COL") or c.name == "None" for c in cols):
        raise SchemaDriftError(f"{table.schema}.{table.table}: the binlog has no column names "
                               f"(set binlog_row_metadata=FULL on the server)")
    return TableSchema(table_id=int(table.table_id), database=str(table.schema), table=str(table.table), columns=cols)


class SchemaCache:
    """Compiled plans per table id, tied to the library's Table object; filtered tables map to None."""

    def __init__(self, table_filter: TableFilter, json_decoder: JsonDecoder, *, enum_labels: bool = False) -> None:
        self.table_filter = table_filter
        self.json_decoder = json_decoder
        self.enum_labels = enum_labels
        self._plans: dict[int, tuple[Any, RowDecoder | None]] = {}
        self.compiled = 0

    def plan(self, table_id: int, table: Any) -> RowDecoder | None:
        hit = self._plans.get(table_id)
        if hit is not None and hit[0] is table:
            return hit[1]
        plan = None
        if self.table_filter(str(table.schema), str(table.table)):
            plan = RowDecoder(table_schema(table), self.json_decoder, enum_labels=self.enum_labels)
            self.compiled += 1
            log.debug("compiled row plan for %s.%s (table id %d)", table.schema, table.table, table_id)
        self._plans[table_id] = (table, plan)
        return plan

    def invalidate(self) -> None:
        self._plans.clear()
