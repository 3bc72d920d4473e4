"""The two tables of a full scan: connections, column types, the row hash of each side, the bucket layout.

Why its own module: everything the scan learns from the servers before the first chunk (types, whether the
server has CRC32C, the key span) is decided here once; the chunk loop and the drill-down then only run
statements built by `checksum` on these sides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.errors import TerminalError
from cdc_repair.validate import checksum as cs
from cdc_repair.validate.scan_sizer import BUCKET_ROWS, initial_width

log = logging.getLogger(__name__)

_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})


class Side:
    """One table of the pair: `scan` runs the pipelined chunk queries, `conn` everything else (drill-down,
    check), so a drill-down never waits for the next chunk's query. `conn` opens on first use: a scan of
    identical tables never needs it (each connection costs a TLS context and a handshake)."""

    def __init__(self, scan: mysql.Connection, table: str, h: cs.HashSpec,
                 opener: Callable[[], mysql.Connection]) -> None:
        self.scan = scan
        self.table = table
        self.hash = h
        self._opener = opener
        self._conn: mysql.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> mysql.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = self._opener()
            return self._conn

    def close(self) -> None:
        for c in (self._conn, self.scan):
            try:
                if c is not None:
                    c.close()
            except Exception:  # already broken: nothing to release
                log.debug("closing a scan connection failed", exc_info=True)


@dataclass(frozen=True)
class Buckets:
    """Bucketed checksums of an integer key: `(key - offset) DIV width`, `offset` ≤ every key of both sides."""

    width: int
    offset: int


@dataclass
class Sides:
    source: Side
    target: Side
    buckets: Buckets | None  # None: the generic keyset strategy

    def close(self) -> None:
        self.source.close()
        self.target.close()


def open_sides(settings: Settings, pair: PairConfig) -> Sides:
    """Connect to both tables, check their columns, build each side's row hash and choose the strategy."""
    def connect(server: str) -> mysql.Connection:
        conn = mysql.connect(settings.server_dsn(server))
        mysql.execute(conn, Statement("SET SESSION time_zone = '+00:00'"))
        return conn

    src = connect(pair.source.server)
    tgt = connect(pair.target.server)
    try:
        s_types = _types(src, pair, pair.source.table)
        t_types = _types(tgt, pair, pair.target.table)
        # the key's bytes are hashed too: a row moved to another key, or a key spelled otherwise under a
        # case-/pad-insensitive collation ('KEY10' for 'key10'), changes its chunk's checksum
        cols = [*pair.key, *cs.projection(pair, list(s_types))]
        missing = [c for c in cols if c not in t_types or c not in s_types]
        if missing:
            raise TerminalError(f"pair '{pair.name}': column(s) {', '.join(missing)} missing in "
                                f"{pair.source.table} or {pair.target.table} (fix the pair's columns)")
        # A column long on either side is pre-hashed the same way on both, so equal values hash equal.
        types = {c: (s_types[c] if s_types[c].lower() in cs.LONG_TYPES else t_types[c]) for c in cols}
        marker = cs.rule_marker(pair)
        crc = _has_crc32c(src) and _has_crc32c(tgt)
        buckets = bucket_layout(pair, src, tgt, s_types, t_types)
        s_hash = cs.row_hash(cols, types, marker, crc32c=crc)
        t_hash = cs.row_hash(cols, types, cs.HashSpec("''") if marker else None, crc32c=crc)
    except BaseException:
        src.close()
        tgt.close()
        raise
    return Sides(Side(src, pair.source.table, s_hash, lambda: connect(pair.source.server)),
                 Side(tgt, pair.target.table, t_hash, lambda: connect(pair.target.server)), buckets)


def _types(conn: mysql.Connection, pair: PairConfig, table: str) -> dict[str, str]:
    schema, name = table.split(".", 1)
    rows = mysql.fetch_all(conn, cs.column_types(schema, name))
    if not rows:
        raise TerminalError(f"pair '{pair.name}': table {table} not found (check pairs[].source/target)")
    return {str(c): str(t) for c, t in rows}


def bucket_layout(pair: PairConfig, src: mysql.Connection, tgt: mysql.Connection, s_types: dict[str, str],
                  t_types: dict[str, str]) -> Buckets | None:
    """Bucketed checksums need one integer key column; the first width aims at BUCKET_ROWS rows per bucket
    from the key span and the row estimate (later widths follow the measured density). Buckets count from
    the lowest key of either side (the offset, when negative), so one online row below the source's range
    (id -5) neither breaks buckets nor moves the chunk boundaries. None: the generic keyset strategy."""
    if len(pair.key) != 1:
        return None
    key = pair.key[0]
    if s_types.get(key, "").lower() not in _INT_TYPES or t_types.get(key, "").lower() not in _INT_TYPES:
        return None
    spans = []
    for conn, table in ((src, pair.source.table), (tgt, pair.target.table)):
        row = mysql.fetch_one(conn, cs.min_key(table, key))
        if row is None or row[0] is None:
            continue
        spans.append((int(row[0]), int(row[1])))
    if not spans:
        return Buckets(BUCKET_ROWS, 0)
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if hi - lo >= 2**62:  # (key - offset) must stay a BIGINT
        return None
    schema, name = pair.source.table.split(".", 1)
    est = mysql.fetch_one(src, cs.estimated_rows(schema, name))
    rows = max(1, int(est[0] or 1) if est else 1)
    return Buckets(initial_width(lo, hi, rows), min(0, lo))


def estimate_rows(sides: Sides) -> int:
    """The larger of both tables' row estimates (information_schema; 0 when unknown)."""
    est = 0
    for side in (sides.source, sides.target):
        schema, name = side.table.split(".", 1)
        row = mysql.fetch_one(side.scan, cs.estimated_rows(schema, name))
        est = max(est, int(row[0] or 0) if row else 0)
    return est


def _has_crc32c(conn: mysql.Connection) -> bool:
    """CRC32C() exists on MariaDB ≥ 10.8 (not on MySQL): then long columns are pre-hashed by CRC, not MD5."""
    try:
        mysql.fetch_one(conn, Statement("SELECT CRC32C('a')"))
        return True
    except Exception:
        return False
