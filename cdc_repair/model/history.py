"""What compensation may trust, as values (pure): row changes re-read from the binlog, their coordinates, and
the marks the service puts on its own writes.

Invariant 4 (DESIGN): compensation writes only before-images the service read from the binlog itself. A Kafka
message is a hint of *which* key changed and *where* in the binlog (its `cdc-repair-binlog` header, set by
the tailer); the values come from `ChangeHistory.changes()`, which re-reads the binlog from there.

Invariant 5: a repair writes its `undo_log` row first in its transaction (the marker, like Otter's mark
table for Canal loops); the tailer sees rows of `MARKER_TABLE` in a transaction and tags the transaction's
other messages with `ORIGIN_HEADER: repair`; the validator never takes those for new source changes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cdc_repair.model.position import BinlogPosition
from cdc_repair.model.source_event import Coordinates, RowValues

MARKER_TABLE = "undo_log"  # the table a repair writes first in its transaction (repair/undo_log.py)
# Columns only our undo_log has (a Seata AT `undo_log`, written in the same transaction as an application's own
# writes, has xid but none of the others): a table of that name without them is not the marker.
MARKER_COLUMNS = frozenset({"xid", "strategy", "before_image", "after_image", "table_name"})
ORIGIN_HEADER = "cdc-repair-origin"  # Kafka record header on messages of the service's own writes
ORIGIN_REPAIR = b"repair"
BINLOG_HEADER = "cdc-repair-binlog"  # Kafka record header: `file:pos` where the message's first transaction starts

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One change of one row as the binlog holds it: full before/after images (Canal strings), the position
    where its transaction starts, and whether the transaction was a repair (it wrote `MARKER_TABLE`)."""

    type: str  # INSERT | UPDATE | DELETE
    before: RowValues | None  # None for INSERT
    after: RowValues | None  # None for DELETE
    position: BinlogPosition  # start of the transaction (a position a binlog dump can start from)
    mysql_type: Mapping[str, str]
    by_repair: bool = False

    def changed_columns(self) -> list[str]:
        """Columns whose value the change altered (Canal's `old` keys for an UPDATE)."""
        if self.before is None or self.after is None:
            return list((self.after or self.before or {}).keys())
        return [c for c, v in self.before.items() if self.after.get(c) != v]


class ChangeHistory(Protocol):
    """Re-reads a table's row changes from a server's binlog (implemented in source/, the only binlog reader).

    `changes(server, table, key_columns, keys, start)` → for each wanted key (a tuple of key values as Canal
    strings), its changes at or after `start`, in binlog order, up to the server's binlog end at the time of
    the call. Raises `BinlogUnavailableError` when `start` is no longer on the server.
    """

    def changes(self, server: str, table: str, key_columns: Sequence[str], keys: Collection[tuple[str, ...]],
                start: BinlogPosition) -> dict[tuple[str, ...], list[KeyChange]]: ...


# ---------------------------------------------------------------- headers and ledger coordinates


def is_marker(table: str, columns: Collection[str]) -> bool:
    """True for rows of the service's own undo_log (the repair mark), by name and column signature."""
    return table == MARKER_TABLE and set(columns) >= MARKER_COLUMNS


def origin_headers(repair: bool) -> list[tuple[str, bytes]]:
    return [(ORIGIN_HEADER, ORIGIN_REPAIR)] if repair else []


def is_own_write(headers: Headers) -> bool:
    """True when a record carries the repair origin mark (a change the service made itself)."""
    return any(k == ORIGIN_HEADER and v == ORIGIN_REPAIR for k, v in headers)


def binlog_header(position: BinlogPosition) -> tuple[str, bytes]:
    return BINLOG_HEADER, f"{position.file}:{position.pos}".encode()


def coordinates_from_headers(headers: Headers, gtid: str = "") -> Coordinates | None:
    """The binlog coordinates of a record's header, or None (no or unreadable header)."""
    for k, v in headers:
        if k != BINLOG_HEADER or v is None:
            continue
        file, _, pos = v.decode("utf-8", "replace").rpartition(":")
        if file and pos.isdigit():
            return Coordinates(file, int(pos), gtid or None)
    return None
