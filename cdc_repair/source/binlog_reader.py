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
           raw_events.CompressedEvent,
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
        self._packets: raw_events.PacketReader | None = None  # the stream connection's, once it is open
        self._fast = False
        self._use_checksum = False
        self._post_header_lengths: Any = None
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
        self._actions = _fast_actions(raw_events.library_builds(self._stream))

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
            self._packets = raw_events.PacketReader(conn, _pymysql.protocol.MysqlPacket, _pymysql.err)
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
        fast_event = self._fast_event
        while True:
            packets = self._packets
            try:
                if packets is not None and self._fast:
                    payload = packets.read()
                    out = fast_event(payload)
                    if out is not _LIBRARY:
                        if out is not None:
                            yield out
                        continue
                    packets.give_back(payload)
                ev = stream.fetchone()
            except (ReconnectRefused, UnreachableError):
                raise
            except _pymysql.err.MySQLError as exc:
                raise self._stream_error(exc) from None
            if ev is None:
                return
            self._use_checksum, self._post_header_lengths = raw_events.stream_framing(stream)
            self._fast = True  # the stream is set up (checksums known): the hot events can be read directly
            out = self._library_event(ev)
            if out is not None:
                yield out

    def _fast_event(self, data: bytes) -> Any:
        """A SourceEvent (or None: nothing to yield) for the hot event types, `_LIBRARY` for the others."""
        if data[0]:  # not an OK packet: EOF or a server error, the library's
            return _LIBRARY
        event_type = data[5]
        action = self._actions.get(event_type, _LIBRARY)
        if action is _LIBRARY:
            return _LIBRARY
        stream = self._stream
        log_pos = int.from_bytes(data[14:18], "little")
        if log_pos:
            stream.log_pos = log_pos  # as the library keeps it
        if action is _SKIP:
            return None
        timestamp = int.from_bytes(data[1:5], "little")
        if event_type == raw_events.XID_EVENT:
            return Commit(BinlogPosition(stream.log_file, log_pos, self.gtids.commit()), timestamp)
        if event_type == raw_events.MARIADB_GTID_EVENT:
            gtid = (f"{int.from_bytes(data[28:32], 'little')}-{int.from_bytes(data[6:10], 'little')}-"
                    f"{int.from_bytes(data[20:28], 'little')}")
            self.gtids.begin(gtid)
            return Gtid(gtid, timestamp)
        if event_type in raw_events.COMPRESSED:
            return self._compressed(event_type, data)
        table_id = int.from_bytes(data[20:26], "little")
        table = stream.table_map.get(table_id)
        if event_type == raw_events.TABLE_MAP_EVENT:
            return None if table is not None else _LIBRARY  # known and frozen: skipped; new: the library parses
        if table is None:
            return None  # a table the library did not map (another schema): as the library, skipped
        layout = raw_events.ROWS_BY_TYPE[event_type]
        columns, present, start = raw_events.frame_rows(data, 20, event_type, self._post_header_lengths, layout.v2,
                                                         layout.known_post_header, layout.images)
        end = int.from_bytes(data[10:14], "little") + 1 - (4 if self._use_checksum else 0)
        return self._rows(layout.kind, layout.images, table_id, table, columns, present, data, start, end,
                          timestamp)

    def _rows(self, kind: str, images: int, table_id: int, table: Any, columns: int, present: bytes, body: bytes,
              start: int, end: int, timestamp: int) -> SourceEvent | None:
        plan = self.schemas.plan(table_id, table)
        if plan is None:
            return None
        if columns != len(plan.names):
            raise SchemaDriftError(f"{table.schema}.{table.table}: rows event has {columns} "
                                   f"columns, table map has {len(plan.names)}")
        if present != _full_bitmap(columns, images):
            return PartialRows(str(table.schema), str(table.table), kind, timestamp)  # the tailer decides
        return RowsData(kind, plan, body, start, end, timestamp)

    def _compressed(self, event_type: int, data: bytes) -> SourceEvent | None:
        """A compressed event, reported (the tailer decides, as for partial images), never decoded: rows events
        of included tables, query events of any schema (statement DML or DDL), MySQL transaction payloads."""
        timestamp = int.from_bytes(data[1:5], "little")
        kind = raw_events.COMPRESSED_ROWS.get(event_type)
        if kind is not None:
            table_id = int.from_bytes(data[20:26], "little")
            table = self._stream.table_map.get(table_id)
            if table is None or self.schemas.plan(table_id, table) is None:
                return None  # a table capture does not include
            return PartialRows(str(table.schema), str(table.table), kind, timestamp, "log_bin_compress")
        if event_type == raw_events.QUERY_COMPRESSED_EVENT:
            # post-header: thread id (4), exec time (4), schema length (1), error code (2), status length (2);
            # then the status variables and the schema name, uncompressed
            status_end = 33 + int.from_bytes(data[31:33], "little")
            schema = data[status_end:status_end + data[28]].decode("utf-8", "replace")
            return PartialRows(schema or "?", "*", "QUERY", timestamp, "log_bin_compress")
        return PartialRows("?", "*", "TRANSACTION", timestamp, "binlog_transaction_compression")

    def _library_event(self, ev: Any) -> SourceEvent | None:
        """The SourceEvent for an event the library built, None if there is nothing to yield."""
        stream = self._stream
        cls = type(ev)
        if isinstance(ev, raw_events.RawRowsEvent):
            table = stream.table_map.get(ev.table_id)
            if table is None:
                return None
            return self._rows(ev.kind, ev.images, ev.table_id, table, ev.number_of_columns, ev.present, ev.body,
                              ev.start, ev.end, ev.timestamp)
        if cls is raw_events.CompressedEvent:
            return self._compressed(ev.packet.event_type, ev.payload)
        if cls is PartialUpdateRowsEvent:
            raise SchemaDriftError("partial JSON update events in the binlog: capture needs full row images "
                                   "(SET GLOBAL binlog_row_value_options='' on the server)")
        if cls is raw_events.LightXid:
            return Commit(BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()), ev.timestamp)
        if cls is raw_events.LightMariadbGtid or cls is GtidEvent:
            self.gtids.begin(ev.gtid)
            return Gtid(ev.gtid, ev.timestamp)
        if cls is QueryEvent:
            return self._query(ev)
        if cls is HeartbeatLogEvent:
            return Heartbeat(str(getattr(ev, "ident", stream.log_file)), int(ev.packet.log_pos))
        if cls is RotateEvent:
            # table ids are numbered per server run: after a restart the next file may give an id of this file
            # to another table, and freeze_schema would keep the old mapping (rows published as another table)
            stream.table_map.clear()
            self.schemas.invalidate()
            return Rotate(BinlogPosition(str(ev.next_binlog), int(ev.position), self.gtids.current()))
        return None

    def _query(self, ev: Any) -> SourceEvent | None:
        stream = self._stream
        sql = ev.query.strip()
        head = sql[:20].upper()
        if head.startswith(("COMMIT", "ROLLBACK")):
            return Commit(BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()), ev.timestamp)
        if head.startswith(_NOT_DDL):
            return None
        schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema)
        dml = classify_dml(sql, schema)
        if dml is not None:  # binlog_format STATEMENT/MIXED: rows not in the binlog, not a boundary
            return StatementRows(schema, sql, dml, ev.timestamp)
        stream.table_map.clear()  # the library re-parses the next TableMaps (new columns)
        self.schemas.invalidate()
        return Ddl(schema, sql, BinlogPosition(stream.log_file, ev.packet.log_pos, self.gtids.commit()), ev.timestamp)

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


_LIBRARY = object()  # the event is the library's to build
_SKIP = object()  # the library would drop it unbuilt (or, a known TABLE_MAP, unparsed): only its position counts
_READ = object()  # read here


def _fast_actions(library_builds: frozenset[Any]) -> dict[int, object]:
    """Per event type, who reads it: here (GTID, XID, TABLE_MAP, rows events), nobody (types the library would
    drop without building an event), or the library (all the rest)."""
    actions: dict[int, object] = {}
    for event_type in range(256):
        built_by = raw_events.library_event_class(event_type)
        if built_by not in library_builds:
            actions[event_type] = _SKIP
    for event_type in (raw_events.XID_EVENT, raw_events.MARIADB_GTID_EVENT, raw_events.TABLE_MAP_EVENT,
                       *raw_events.ROWS_BY_TYPE, *raw_events.COMPRESSED):
        actions[event_type] = _READ
    return actions


@functools.lru_cache(maxsize=256)
def _full_bitmap(columns: int, images: int) -> bytes:
    return ((1 << columns) - 1).to_bytes((columns + 7) // 8, "little") * images
