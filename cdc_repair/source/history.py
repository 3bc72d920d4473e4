"""Re-read a table's row changes from the binlog (implements `model.history.ChangeHistory`) for compensation.

Compensation must never write values it did not read from the binlog itself (DESIGN invariant 4), so at
repair time the changes of the keys to revert are read again, from the coordinates the ledger recorded up
to the server's binlog end as of the call, through the same reader and row decoder as capture (the values
are the Canal strings capture would publish). Each change carries the position where its transaction starts
and whether that transaction wrote `undo_log` first (a repair's own write).

A separate replica connection with its own random server id (2^31 and up: clear of the ids operators pick)
is opened per call and closed at the end; the user needs REPLICATION SLAVE on the source server, as capture.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Sequence

from cdc_repair.config import Settings
from cdc_repair.errors import BinlogPurgedError, BinlogUnavailableError
from cdc_repair.model.history import MARKER_TABLE, KeyChange, is_marker
from cdc_repair.model.position import BinlogPosition, file_index
from cdc_repair.source.binlog_reader import BinlogReader
from cdc_repair.source.events import Commit, Ddl, Gtid, Heartbeat, Rotate, RowsData
from cdc_repair.source.server_binlog import server_binlog

log = logging.getLogger(__name__)

Key = tuple[str, ...]


class BinlogHistory:
    """`ChangeHistory` over the servers of `settings` (one short replica stream per call)."""

    def __init__(self, settings: Settings, *, heartbeat_s: float = 0.2) -> None:
        self.settings = settings
        self.heartbeat_s = heartbeat_s

    def changes(self, server: str, table: str, key_columns: Sequence[str], keys: Collection[Key],
                start: BinlogPosition) -> dict[Key, list[KeyChange]]:
        dsn = self.settings.server_dsn(server)
        info = server_binlog(dsn)
        if start.file not in info.files:
            raise BinlogUnavailableError(
                f"binlog file {start.file} is no longer on server '{server}' (purged; oldest is "
                f"{next(iter(info.files), '?')}): compensation reads before-images only from the binlog, so it "
                f"cannot revert this change; repair it with --strategy forward")
        database, _, name = table.partition(".")
        reader = BinlogReader(dsn, random.randint(2**31, 2**32 - 2), start,
                              table_filter=lambda s, t: (s == database and t == name) or t == MARKER_TABLE,
                              is_mariadb=info.is_mariadb, only_schemas=[database], heartbeat_s=self.heartbeat_s,
                              enum_labels=True)  # values to write back: ENUM/SET as member names, not Canal's
                              # index/bitmask (planner.row_event reads the message's back the same way)
        try:
            found = _collect(reader, start, info.current, key_columns, set(keys), name)
        except BinlogPurgedError as exc:
            raise BinlogUnavailableError(f"binlog at {start} is no longer readable on server '{server}' ({exc}); "
                                         f"repair it with --strategy forward") from None
        finally:
            reader.close()
        log.debug("re-read %s from %s to %s: %d change(s) of %d key(s)", table, start, info.current,
                  sum(map(len, found.values())), len(keys))
        return found


def _collect(reader: BinlogReader, start: BinlogPosition, end: BinlogPosition, key_columns: Sequence[str],
             keys: set[Key], table: str) -> dict[Key, list[KeyChange]]:
    """The wanted keys' changes from `start` until the first boundary at or after `end` (or the server idles)."""
    out: dict[Key, list[KeyChange]] = {}
    txn: list[tuple[Key, KeyChange]] = []
    marked = False
    boundary = start
    stop = _reached(end)
    idle = 0
    for ev in reader.events():
        if isinstance(ev, RowsData):
            if ev.decoder.schema.table != table and is_marker(ev.decoder.schema.table, ev.decoder.names):
                marked = True
            else:
                txn.extend(_changes(ev, key_columns, keys, boundary))
        elif isinstance(ev, Gtid):
            txn, marked = [], False
        elif isinstance(ev, Commit | Ddl):
            for key, change in txn:
                out.setdefault(key, []).append(_with_mark(change, marked))
            txn, marked, boundary = [], False, ev.position
            if stop(ev.position):
                break
        elif isinstance(ev, Rotate):
            if not txn:
                boundary = ev.position
            if file_index(ev.position.file) > file_index(end.file):
                break
        elif isinstance(ev, Heartbeat):  # the server had nothing to send for a while
            idle += 1
            if idle >= 2 or stop(BinlogPosition(ev.file, ev.pos)):
                break
    return out


def _reached(end: BinlogPosition) -> Callable[[BinlogPosition], bool]:
    return lambda pos: not end.is_after(pos)


def _with_mark(change: KeyChange, marked: bool) -> KeyChange:
    if not marked:
        return change
    return KeyChange(change.type, change.before, change.after, change.position, change.mysql_type, True)


def _changes(ev: RowsData, key_columns: Sequence[str], keys: set[Key],
             txn_start: BinlogPosition) -> list[tuple[Key, KeyChange]]:
    decoder = ev.decoder
    names = decoder.names
    try:
        idx = [names.index(k) for k in key_columns]
    except ValueError:
        return []
    images = decoder.images(ev.body, ev.start, ev.end)
    out = []
    step = 2 if ev.kind == "UPDATE" else 1
    for j in range(0, len(images), step):
        first = images[j]
        last = images[j + step - 1]
        key = tuple(str(last[i]) if last[i] is not None else "" for i in idx)
        if key not in keys:  # an UPDATE may have changed the key: it is a change of the old key too
            key = tuple(str(first[i]) if first[i] is not None else "" for i in idx)
            if key not in keys:
                continue
        row_first = dict(zip(names, first, strict=True))
        row_last = dict(zip(names, last, strict=True))
        before = None if ev.kind == "INSERT" else row_first
        after = None if ev.kind == "DELETE" else row_last
        out.append((key, KeyChange(ev.kind, before, after, txn_start, decoder.mysql_type)))
    return out
