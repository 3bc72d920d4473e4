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

If a library upgrade renames the map, `install()` fails at the first BinlogReader with a clear error (and the
capture tests fail), never silently.
"""

from __future__ import annotations

from typing import Any

from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import TableMapEvent

# python-mysql-replication event type codes (constants.BINLOG)
TABLE_MAP_EVENT = 0x13
XID_EVENT = 0x10
MARIADB_GTID_EVENT = 0xA2
READ_BUFFER = 1 << 18  # bytes per socket read of the binlog stream (pymysql's default file buffer is 8 KiB)


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
        declared = self.known_post_header
        lengths = kwargs.get("post_header_lengths")
        if lengths and 0 <= from_packet.event_type - 1 < len(lengths):
            declared = max(declared, int(lengths[from_packet.event_type - 1]))
        extra = int.from_bytes(data[pos + 8:pos + 10], "little") - 2 if self.v2 else 0  # length counts itself
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
        self.number_of_columns = columns
        size = (columns + 7) // 8 * self.images
        self.present = data[pos:pos + size]
        self.start = pos + size


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
                            MARIADB_GTID_EVENT: LightMariadbGtid, TABLE_MAP_EVENT: table_map_event}
# our replacements plus what must stay allowed for the library's own bookkeeping (see `only_events`)
LIBRARY_NEEDS = (table_map_event,)


def install() -> None:
    """Register the classes above in the library's private event map (idempotent)."""
    event_map: dict[int, Any] | None = getattr(BinLogPacketWrapper, "_BinLogPacketWrapper__event_map", None)
    if not isinstance(event_map, dict):
        raise RuntimeError("python-mysql-replication changed its event map: source/raw_events.py needs an update")
    event_map.update(_CLASSES)


def enlarge_reads(connection: Any) -> None:
    """Read the binlog stream in large socket reads: pymysql reads through an 8 KiB file buffer, one system
    call (and one GIL release, which lets Kafka's sender thread in) per few small events."""
    old = connection._rfile
    connection._rfile = connection._sock.makefile("rb", buffering=READ_BUFFER)
    old.close()  # the handshake is complete: nothing is left in its buffer
