"""The binlog stream (with source/raw_events.py, the only importers of python-mysql-replication).

What the library does here: the replica connection (COM_BINLOG_DUMP with checksum and heartbeat setup),
packet framing, event headers, TableMap parsing (FULL metadata: names, signedness, charsets, PK), and the
small control events. What it does *not* do: rows decoding. Rows events are yielded as the raw body slice
plus a per-table compiled plan (source/table_plans.py, source/decoder.py), ~10x faster than the library's
generic decoder; raw_events.py explains how, and why that needs the library's private event map.

Schema cache: `freeze_schema=True` keeps the library from re-parsing each TableMap (~200 µs each); our plans are
keyed by table id and tied to the library's Table object, so when the library re-parses (new file, or after
we clear its map on DDL) the plan is recompiled. Every DDL clears both, so ALTER TABLE mid-stream is followed
from the TableMap FULL metadata, never from information_schema.

Reconnects: the library silently reconnects at the last *event* position (possibly mid-transaction). We refuse
that (the connect wrapper raises) so the tailer restarts cleanly from its last transaction boundary.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pymysqlreplication.binlogstream as _binlogstream
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent, HeartbeatLogEvent, QueryEvent, RotateEvent
from pymysqlreplication.gtid import Gtid as LibGtid
from pymysqlreplication.gtid import GtidSet
from pymysqlreplication.json_binary import parse_json
from pymysqlreplication.row_event import PartialUpdateRowsEvent

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.tls import driver_tls_args, verify_tls_session
from cdc_repair.errors import BinlogPurgedError, SchemaDriftError, TransientError, UnreachableError
from cdc_repair.model.position import BinlogPosition
from cdc_repair.source import raw_events
from cdc_repair.source.events import (
    Commit,
    Ddl,
    Gtid,
    Heartbeat,
    PartialRows,
    Rotate,
    RowsData,
    SourceEvent,
    StatementRows,
)
from cdc_repair.source.statements import classify_dml
from cdc_repair.source.table_plans import SchemaCache

log = logging.getLogger(__name__)

# PyMySQL is reached through the library (which depends on it) so the driver stays imported only in db/mysql.py.
_pymysql: Any = _binlogstream.pymysql

TableFilter = Callable[[str, str], bool]

_EVENTS = [*raw_events.ROWS_EVENTS, *raw_events.LIBRARY_NEEDS, PartialUpdateRowsEvent, raw_events.LightXid,
           QueryEvent, GtidEvent, raw_events.LightMariadbGtid, HeartbeatLogEvent, RotateEvent]
_NOT_DDL = ("BEGIN", "COMMIT", "ROLLBACK", "XA ", "SAVEPOINT", "RELEASE SAVEPOINT", "# ")
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236


class ReconnectRefused(TransientError):
    """The library tried to reconnect mid-stream; the tailer restarts from its last boundary instead."""


def _json_text(raw: bytes) -> str | None:
    """MySQL binary JSON → compact JSON text (MariaDB stores JSON as text and never gets here)."""
    import orjson

    if not raw:
        return None
    value = parse_json(raw[0], raw[1:])
    return orjson.dumps(_plain_json(value)).decode()


def _plain_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_plain_json(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


# ---------------------------------------------------------------- the stream


class GtidTracker:
    """The executed GTID set as of the last commit (MariaDB: last seq per domain; MySQL: interval set).

    The set's text is computed once per change, not per read: it is asked for at every commit."""

    def __init__(self, start: str | None, is_mariadb: bool) -> None:
        self.is_mariadb = is_mariadb
        self.pending: str | None = None
        self._domains: dict[str, str] = {}
        self._set: Any = None
        if start:
            if is_mariadb:
                for g in start.split(","):
                    if g.strip():
                        self._domains[g.strip().split("-", 1)[0]] = g.strip()
            else:
                try:
                    self._set = GtidSet(start)
                except Exception:  # an unparsable saved set only loses the informative GTID
                    self._set = None
        self._text = self._render()

    def begin(self, gtid: str) -> None:
        self.pending = gtid

    def commit(self) -> str | None:
        pending = self.pending
        if pending:
            if self.is_mariadb:
                domains = self._domains
                domain = pending.split("-", 1)[0]
                if len(domains) == 1 and domain in domains:  # one replication domain: the set is this GTID
                    domains[domain] = self._text = pending
                else:
                    domains[domain] = pending
                    self._text = self._render()
            else:
                if self._set is None:
                    self._set = GtidSet(None)
                self._set.merge_gtid(LibGtid(pending))
                self._text = self._render()
            self.pending = None
        return self._text

    def current(self) -> str | None:
        return self._text

    def _render(self) -> str | None:
        if self.is_mariadb:
            return ",".join(self._domains[d] for d in sorted(self._domains, key=int)) or None
        return str(self._set).replace("\n", "") if self._set is not None else None


def transactions_from(start_ts: float, events: Iterator[SourceEvent]) -> Iterator[SourceEvent]:
    """`events` without the transactions (and DDL) that began before `start_ts` (a `start: {timestamp}`).
    A transaction is judged by its first event, so none is cut in half; the first one at or after
    `start_ts` ends the skipping (binlog order is commit order)."""
    skipping: bool | None = None  # None: between transactions
    for ev in events:
        if isinstance(ev, Heartbeat | Rotate):
            yield ev
            continue
        if skipping is None:
            skipping = ev.timestamp < start_ts
            if not skipping:
                yield ev
                yield from events
                return
        if isinstance(ev, Commit | Ddl):
            skipping = None


class BinlogReader:
    """Replica stream from `start` (a boundary) yielding `SourceEvent`s; `close()` ends it.

    `only_schemas` narrows what the library even parses; `table_filter(schema, table)` decides per table.
    """

    def __init__(self, dsn: Dsn, server_id: int, start: BinlogPosition, *, table_filter: TableFilter,
                 is_mariadb: bool, only_schemas: list[str] | None = None, heartbeat_s: float = 1.0,
                 skip_to_timestamp: float | None = None, enum_labels: bool = False) -> None:
        self.dsn = dsn
        self.start = start
        raw_events.install()
        self.schemas = SchemaCache(table_filter, _json_text, enum_labels=enum_labels)
        self.gtids = GtidTracker(start.gtid_set, is_mariadb)
        self._stream_connects = 0
        # Not the library's skip_to_timestamp: it also drops heartbeats (their timestamp is 0) for the whole
        # stream, so an idle tailer would never flush or notice a stop. Whole transactions are skipped here.
        self._skip_before = skip_to_timestamp
        settings = {"host": dsn.host, "port": dsn.port, "user": dsn.user, "password": dsn.password,
                    "read_timeout": max(10, int(heartbeat_s * 6)), "connect_timeout": 10,
                    **driver_tls_args(dsn)}  # the replication stream is encrypted as every other connection
        self._stream = BinLogStreamReader(
            connection_settings=settings, server_id=server_id, resume_stream=True, blocking=True,
            log_file=start.file, log_pos=start.pos, only_events=_EVENTS, only_schemas=only_schemas,
            freeze_schema=True, slave_heartbeat=heartbeat_s, enable_logging=False, is_mariadb=False,
            pymysql_wrapper=self._connect,
        )

    def _connect(self, **kwargs: Any) -> Any:
        if kwargs.get("db") != "information_schema":  # the stream connection (the other is the ctl one)
            self._stream_connects += 1
            if self._stream_connects > 1:
                raise ReconnectRefused("binlog connection lost; restarting from the last transaction boundary")
        try:
            conn = _pymysql.connect(**kwargs)
        except _pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 2026:  # CR_SSL_CONNECTION_ERROR: TLS asked for and impossible
                verify_tls_session(self.dsn, None)
            raise UnreachableError(f"cannot connect to {self.dsn.masked()} for the binlog stream: "
                                   f"{exc.args[-1]}") from None
        if self.dsn.tls.required:
            verify_tls_session(self.dsn, mysql.session_cipher(conn))
        if kwargs.get("db") != "information_schema":
            raw_events.enlarge_reads(conn)
        return conn

    @property
    def log_file(self) -> str:
        return str(self._stream.log_file)

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # closing a broken connection must not mask the original error
            log.debug("error closing the binlog stream", exc_info=True)

    def events(self) -> Iterator[SourceEvent]:
        if self._skip_before is None:
            return self._events()
        return transactions_from(self._skip_before, self._events())

    def _events(self) -> Iterator[SourceEvent]:
        stream = self._stream
        plan_for = self.schemas.plan
        while True:
            try:
                ev = stream.fetchone()
            except (ReconnectRefused, UnreachableError):
                raise
            except _pymysql.err.MySQLError as exc:
                raise self._stream_error(exc) from None
            if ev is None:
                return
            cls = type(ev)
            if isinstance(ev, raw_events.RawRowsEvent):
                table = stream.table_map.get(ev.table_id)
                if table is None:
                    continue
                plan = plan_for(ev.table_id, table)
                if plan is None:
                    continue
                if ev.number_of_columns != len(plan.names):
                    raise SchemaDriftError(f"{table.schema}.{table.table}: rows event has {ev.number_of_columns} "
                                           f"columns, table map has {len(plan.names)}")
                if ev.present != _full_bitmap(ev.number_of_columns, ev.images):
                    yield PartialRows(str(table.schema), str(table.table), ev.kind, ev.timestamp)  # tailer decides
                    continue
                yield RowsData(ev.kind, plan, ev.body, ev.start, ev.end, ev.timestamp)
            elif cls is PartialUpdateRowsEvent:
                raise SchemaDriftError("partial JSON update events in the binlog: capture needs full row images "
                                       "(SET GLOBAL binlog_row_value_options='' on the server)")
            elif cls is raw_events.LightXid:
                yield Commit(BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()), ev.timestamp)
            elif cls is raw_events.LightMariadbGtid or cls is GtidEvent:
                self.gtids.begin(ev.gtid)
                yield Gtid(ev.gtid, ev.timestamp)
            elif cls is QueryEvent:
                sql = ev.query.strip()
                head = sql[:20].upper()
                if head.startswith(("COMMIT", "ROLLBACK")):
                    yield Commit(BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()),
                                 ev.timestamp)
                elif not head.startswith(_NOT_DDL):
                    schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema)
                    dml = classify_dml(sql, schema)
                    if dml is not None:  # binlog_format STATEMENT/MIXED: rows not in the binlog, not a boundary
                        yield StatementRows(schema, sql, dml, ev.timestamp)
                        continue
                    stream.table_map.clear()  # the library re-parses the next TableMaps (new columns)
                    self.schemas.invalidate()
                    yield Ddl(schema, sql, BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()),
                              ev.timestamp)
            elif cls is HeartbeatLogEvent:
                yield Heartbeat(str(getattr(ev, "ident", stream.log_file)), int(ev.packet.log_pos))
            elif cls is RotateEvent:
                # table ids are numbered per server run: after a restart the next file may give an id of this file
                # to another table, and freeze_schema would keep the old mapping (rows published as another table)
                stream.table_map.clear()
                self.schemas.invalidate()
                yield Rotate(BinlogPosition(str(ev.next_binlog), int(ev.position), self.gtids.current()))

    def _stream_error(self, exc: Exception) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        if code == ER_MASTER_FATAL_ERROR_READING_BINLOG and ("first log file" in text.lower()
                                                             or "purged" in text.lower()
                                                             or "could not find" in text.lower()):
            return BinlogPurgedError(f"binlog {self.start} is no longer on {self.dsn.masked()} ({text}); "
                                     f"set capture on_purged: resume_and_full_validate, or reset the checkpoint")
        if code in (2013, 2006, 2003, 2002):
            return UnreachableError(f"binlog stream from {self.dsn.masked()} lost: {text}")
        return TransientError(f"binlog stream from {self.dsn.masked()}: MySQL error {code}: {text}")


@functools.lru_cache(maxsize=256)
def _full_bitmap(columns: int, images: int) -> bytes:
    return ((1 << columns) - 1).to_bytes((columns + 7) // 8, "little") * images
