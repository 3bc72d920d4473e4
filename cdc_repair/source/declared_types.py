"""Declared column types for Canal's `mysqlType` (thin adapter: one information_schema query per table version).

Canal fills `mysqlType` from its table meta (`DESC` / `SHOW CREATE TABLE`): the type as declared, with display
widths, ZEROFILL and FLOAT/DOUBLE (M,D), none of which the binlog carries. We read the same text from
`information_schema.COLUMNS.COLUMN_TYPE` once per compiled table plan (a plan lives for one TableMap version:
it is rebuilt after every DDL), and use it only while it still describes that TableMap
(`types.declared_mysql_types`); otherwise, and when the capture user may not see the table's columns, the type
derived from the TableMap stays (one warning per table).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement
from cdc_repair.source import types as T
from cdc_repair.source.decoder import RowDecoder

log = logging.getLogger(__name__)

_COLUMNS = ("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION")


class DeclaredTypes:
    """`mysql_type(decoder)`: the `mysqlType` map for a table plan, looked up once per plan."""

    def __init__(self, dsn: Dsn) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._warned: set[str] = set()
        self.lookups = 0

    def mysql_type(self, decoder: RowDecoder) -> dict[str, str]:
        found = decoder.declared_mysql_type
        if found is None:
            found = self._resolve(decoder)
            decoder.declared_mysql_type = found
        return found

    def _resolve(self, decoder: RowDecoder) -> dict[str, str]:
        schema = decoder.schema
        rows = self._fetch(schema.database, schema.table)
        self.lookups += 1
        columns = tuple((c.name, c.type_code, c.unsigned, c.mysql_type) for c in schema.columns)
        declared = T.declared_mysql_types(columns, [(str(r[0]), str(r[1]), str(r[2])) for r in rows])
        if declared is not None:
            return declared
        if schema.qualified not in self._warned:
            self._warned.add(schema.qualified)
            reason = ("the capture user cannot see its columns (GRANT SELECT ON it)" if not rows else
                      "information_schema already shows a later version of the table")
            log.warning("capture: mysqlType of %s derived from the binlog (no display widths): %s",
                        schema.qualified, reason)
        return decoder.mysql_type

    def _fetch(self, database: str, table: str) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._conn = mysql.connect(self.dsn.with_database(None), timeout_s=10)
        try:
            return list(mysql.fetch_all(self._conn, Statement(_COLUMNS, (database, table))))
        except (mysql.DriverError, OSError) as exc:  # drop the connection; the tailer's retry reconnects
            self.close()
            raise mysql.classify(exc, f"reading the column types of {database}.{table}") from None

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError, mysql.DriverError):  # a dead connection must not mask why we stopped
                conn.close()
