"""The one place that reaches into python-mysql-replication's internals: lighter event classes for the hot path.

Why a hack: the library builds a full Python event object for every binlog event it frames
(`BinLogPacketWrapper` looks the class up in its private, name-mangled `__event_map`), and for rows events that
object decodes every row generically, ~10x slower than our per-table compiled decoder (source/decoder.py). The
library has no supported way to plug in other event classes (upstream issue julien-duponchelle/python-mysql-
replication#382, open); `only_events` only filters *after* the library built the object. So `install()` puts
the classes below into that private map, once, when the first `BinlogReader` is created (not at import time).
binlog_reader.py is the only user of the library in this process, so nothing else sees the change.

What the classes do:
* rows events (v1/v2 WRITE/UPDATE/DELETE): framed only (table id, column count, present-columns bitmaps, where
  the row images are in the packet); `RowsData` carries the undecoded slice to our decoder.
* MariaDB GTID and XID events: the two fields we read, without the library's generic event set-up (checksum
  check, DBMS lookup, keyword plumbing), which cost more than the rest of a single-row transaction's framing.
* TABLE_MAP: with `freeze_schema` a known table id is skipped before anything else is parsed; an unknown one
  is parsed by the library's own `TableMapEvent` (column metadata is the library's job).
* compressed events (MariaDB's compressed query and rows events, MySQL's transaction payload): the library does
  not know them and would drop them silently; `CompressedEvent` hands them on to be reported.

If a library upgrade renames the map, `install()` fails at the first BinlogReader with a clear error (and the
capture tests fail), never silently.
"""

from __future__ import annotations

from typing import Any

from pymysqlreplication.event import NotImplementedEvent
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import TableMapEvent

# python-mysql-replication event type codes (constants.BINLOG)
TABLE_MAP_EVENT = 0x13
XID_EVENT = 0x10
MARIADB_GTID_EVENT = 0xA2
READ_BUFFER = 1 << 18  # bytes per socket read of the binlog stream (pymysql's default file buffer is 8 KiB)


def frame_rows(data: bytes, pos: int, event_type: int, post_header_lengths: Any, v2: bool,
               known_post_header: int, images: int) -> tuple[int, bytes, int]:
    """A rows event's column count, present-columns bitmap(s) and the offset of its first row image; `pos` is
    where its post-header starts (at the 6-byte table id)."""
    declared = known_post_header
    if post_header_lengths and 0 <= event_type - 1 < len(post_header_lengths):
        declared = max(declared, int(post_header_lengths[event_type - 1]))
    extra = int.from_bytes(data[pos + 8:pos + 10], "little") - 2 if v2 else 0  # length counts itself
    pos += declared + max(0, extra)
    first = data[pos]
    if first < 251:
        columns, pos = first, pos + 1
    elif first == 252:
        columns, pos = int.from_bytes(data[pos + 1:pos + 3], "little"), pos + 3
    elif first == 253:
        columns, pos = int.from_bytes(data[pos + 1:pos + 4], "little"), pos + 4
    else:
        columns, pos = int.from_bytes(data[pos + 1:pos + 9], "little"), pos + 9
    size = (columns + 7) // 8 * images
    return columns, data[pos:pos + size], pos + size


class RawRowsEvent:
    """A rows event as the library frames it, minus its decoding (see the module docstring)."""

    kind = ""
    images = 1
    v2 = False
    known_post_header = 8

    def __init__(self, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                 **kwargs: Any) -> None:
        self.packet = from_packet
        self.timestamp = from_packet.timestamp
        pkt = from_packet.packet
        data = pkt._data
        pos = pkt._position
        self.body = data
        self.end = pos + event_size
        self.table_id = int.from_bytes(data[pos:pos + 6], "little")
        self._processed = self.table_id in table_map
        if not self._processed:
            return
        self.number_of_columns, self.present, self.start = frame_rows(
            data, pos, from_packet.event_type, kwargs.get("post_header_lengths"), self.v2, self.known_post_header,
            self.images)


class RawWrite(RawRowsEvent):
    kind = "INSERT"


class RawUpdate(RawRowsEvent):
    kind = "UPDATE"
    images = 2


class RawDelete(RawRowsEvent):
    kind = "DELETE"


class RawWrite2(RawWrite):
    v2, known_post_header = True, 10


class RawUpdate2(RawUpdate):
    v2, known_post_header = True, 10


class RawDelete2(RawDelete):
    v2, known_post_header = True, 10


class LightXid:
    """XID (the commit of a transactional engine's transaction): only its header matters to us."""

    _processed = True

    def __init__(self, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                 **kwargs: Any) -> None:
        self.packet = from_packet
        self.timestamp = from_packet.timestamp


class LightMariadbGtid:
    """MariaDB GTID event (starts a transaction): `domain-server-seq`, as the library spells it."""

    _processed = True

    def __init__(self, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                 **kwargs: Any) -> None:
        self.packet = from_packet
        self.timestamp = from_packet.timestamp
        pkt = from_packet.packet
        data, pos = pkt._data, pkt._position
        seq = int.from_bytes(data[pos:pos + 8], "little")
        domain = int.from_bytes(data[pos + 8:pos + 12], "little")
        self.gtid = f"{domain}-{from_packet.server_id}-{seq}"


class CompressedEvent:
    """A compressed event (MariaDB log_bin_compress, MySQL binlog_transaction_compression): never decoded, only
    reported, so it is not dropped silently by the library as an unknown event type (see binlog_reader.py)."""

    _processed = True

    def __init__(self, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                 **kwargs: Any) -> None:
        self.packet = from_packet
        self.payload = from_packet.packet._data


# event type → what a compressed event held (rows events: their kind)
QUERY_COMPRESSED_EVENT = 0xA5
TRANSACTION_PAYLOAD_EVENT = 0x28
COMPRESSED_ROWS = {0xA6: "INSERT", 0xA7: "UPDATE", 0xA8: "DELETE", 0xA9: "INSERT", 0xAA: "UPDATE", 0xAB: "DELETE"}
COMPRESSED = (QUERY_COMPRESSED_EVENT, TRANSACTION_PAYLOAD_EVENT, *COMPRESSED_ROWS)


class _Skipped:
    _processed = False


_SKIPPED = _Skipped()


def table_map_event(from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any,
                    **kwargs: Any) -> Any:
    """A TABLE_MAP of a table id already mapped (and frozen) is skipped unparsed; others go to the library."""
    if kwargs.get("freeze_schema"):
        pkt = from_packet.packet
        table_id = int.from_bytes(pkt._data[pkt._position:pkt._position + 6], "little")
        if table_id in table_map:
            return _SKIPPED
    return TableMapEvent(from_packet, event_size, table_map, ctl_connection, **kwargs)


ROWS_EVENTS = (RawWrite, RawUpdate, RawDelete, RawWrite2, RawUpdate2, RawDelete2)
_CLASSES: dict[int, Any] = {0x17: RawWrite, 0x18: RawUpdate, 0x19: RawDelete, 0x1E: RawWrite2,
                            0x1F: RawUpdate2, 0x20: RawDelete2, XID_EVENT: LightXid,
                            MARIADB_GTID_EVENT: LightMariadbGtid, TABLE_MAP_EVENT: table_map_event,
                            **dict.fromkeys(COMPRESSED, CompressedEvent)}
# our replacements plus what must stay allowed for the library's own bookkeeping (see `only_events`)
LIBRARY_NEEDS = (table_map_event,)
ROWS_BY_TYPE: dict[int, type[RawRowsEvent]] = {code: cls for code, cls in _CLASSES.items() if cls in ROWS_EVENTS}


def install() -> None:
    """Register the classes above in the library's private event map (idempotent)."""
    _event_map().update(_CLASSES)


def _event_map() -> dict[int, Any]:
    event_map: dict[int, Any] | None = getattr(BinLogPacketWrapper, "_BinLogPacketWrapper__event_map", None)
    if not isinstance(event_map, dict):
        raise RuntimeError("python-mysql-replication changed its event map: source/raw_events.py needs an update")
    return event_map


def library_event_class(event_type: int) -> Any:
    """What the library builds for this event type (after `install()`), as its `BinLogPacketWrapper` looks it up."""
    return _event_map().get(event_type, NotImplementedEvent)


def stream_framing(stream: Any) -> tuple[bool, Any]:
    """The library's own view of the stream the fast path needs: checksums on, FORMAT_DESCRIPTION's post-header
    lengths (both known once the stream is set up, and after each FORMAT_DESCRIPTION)."""
    private = "_BinLogStreamReader__"
    return bool(getattr(stream, private + "use_checksum")), getattr(stream, private + "post_header_lengths")


def library_builds(stream: Any) -> frozenset[Any]:
    """The event classes the library builds for this stream (it drops every other event type unbuilt)."""
    return frozenset(stream._BinLogStreamReader__allowed_events_in_packet)


class PacketReader:
    """The replication connection's packets, read here for the hot event types and handed back to the library
    for the rest.

    Why: for a single-row transaction (GTID, TABLE_MAP, ROWS, XID) the library's per-event framing (pymysql's
    `_read_packet`, the `fetchone` loop, `BinLogPacketWrapper` built with 17 arguments, an event object) cost
    about a third of the capture stage's time. `read()` returns a packet's payload with pymysql's own checks
    (sequence numbers, lost connection, payloads of 16 MiB and more joined); `give_back()` makes that payload
    the next packet the library's `fetchone` reads, exactly as if it came from the socket, so connection set-up,
    rotations, FORMAT_DESCRIPTION, new TABLE_MAPs, heartbeats, server errors and EOF stay the library's job.
    """

    def __init__(self, connection: Any, packet_class: Any, errors: Any) -> None:
        """`packet_class` and `errors`: pymysql's `MysqlPacket` and `err` module (the driver is imported only
        through the library, see binlog_reader.py)."""
        self._conn = connection
        self._packet_class = packet_class
        self._errors = errors
        self._given_back: bytes | None = None
        self._library_read = connection._read_packet
        connection._read_packet = self._read_for_library

    def give_back(self, payload: bytes) -> None:
        self._given_back = payload

    def read(self) -> bytes:
        conn = self._conn
        if conn._current_timeout != conn._read_timeout:  # as pymysql does: only when a write changed it
            conn._sock.settimeout(conn._read_timeout)
            conn._current_timeout = conn._read_timeout
        parts: list[bytes] = []
        while True:
            header = self._exact(4)
            length = header[0] | header[1] << 8 | header[2] << 16
            if header[3] != conn._next_seq_id:
                conn._force_close()
                error = self._errors
                if header[3] == 0:  # MariaDB's error packet at shutdown comes with sequence number 0
                    raise error.OperationalError(2013, "Lost connection to MySQL server during query")
                raise error.InternalError(f"Packet sequence number wrong - got {header[3]} "
                                          f"expected {conn._next_seq_id}")
            conn._next_seq_id = (header[3] + 1) & 0xFF
            payload = self._exact(length)
            if length < 0xFFFFFF:
                if not parts:
                    return payload
                parts.append(payload)
                return b"".join(parts)
            parts.append(payload)

    def _exact(self, size: int) -> bytes:
        conn = self._conn
        try:
            data: bytes = conn._rfile.read(size)
        except OSError as exc:
            conn._force_close()
            raise self._errors.OperationalError(
                2013, f"Lost connection to MySQL server during query ({exc})") from None
        except BaseException:
            conn._force_close()
            raise
        if len(data) < size:
            conn._force_close()
            raise self._errors.OperationalError(2013, "Lost connection to MySQL server during query")
        return data

    def _read_for_library(self, packet_type: Any = None) -> Any:
        payload = self._given_back
        if payload is None:
            return self._library_read() if packet_type is None else self._library_read(packet_type)
        self._given_back = None
        packet = (packet_type or self._packet_class)(payload, self._conn.encoding)
        if packet.is_error_packet():
            packet.raise_for_error()
        return packet


def enlarge_reads(connection: Any) -> None:
    """Read the binlog stream in large socket reads: pymysql reads through an 8 KiB file buffer, one system
    call (and one GIL release, which lets Kafka's sender thread in) per few small events."""
    old = connection._rfile
    connection._rfile = connection._sock.makefile("rb", buffering=READ_BUFFER)
    old.close()  # the handshake is complete: nothing is left in its buffer
