"""The tailer's small hook for what the service must know about each message (pure bookkeeping, no I/O).

- **Own writes** (DESIGN invariant 5): a repair writes its `undo_log` row first in its transaction, like Otter's
  mark table for Canal loops. Rows of `MARKER_TABLE` are never published; they mark the transaction, and the
  messages of its other rows carry the header `cdc-repair-origin: repair`, so the validator does not take the
  service's own writes for new source changes (a compensation would otherwise revert itself, forever).
  The tailer flushes its groups when a marked transaction begins and ends, so a message never mixes a repair's
  rows with an author's.
- **Binlog coordinates** (invariant 4): every row message carries `cdc-repair-binlog: file:pos`, where the
  transaction of its first row starts; compensation re-reads the binlog from there instead of trusting values
  from Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cdc_repair.model.history import MARKER_TABLE, binlog_header, is_marker, origin_headers
from cdc_repair.model.position import BinlogPosition

TableFilter = Callable[[str, str], bool]


class TxnOrigin:
    """Per-transaction marks for the tailer: call `rows()` for every rows event, `grouped()` when its rows
    join the groups, `flushed()` after each group flush, `end_txn()` at every commit/DDL, `reset()` when the
    stream restarts."""

    def __init__(self, included: TableFilter) -> None:
        self.included = included
        self.marked = False
        self._group_start: BinlogPosition | None = None

    def table_filter(self) -> TableFilter:
        """The capture filter plus the marker table (decoded, never published)."""
        included = self.included
        return lambda schema, table: table == MARKER_TABLE or included(schema, table)

    def rows(self, table: str, columns: Sequence[str], flush: Callable[[], None]) -> bool:
        """True when this rows event is the marker (skip it: never published, even when the include patterns
        match it). The first marker row of a transaction first `flush`es what earlier transactions left
        grouped, untagged, and only then marks the transaction."""
        if table != MARKER_TABLE or not is_marker(table, columns):
            return False
        if not self.marked:
            flush()
            self.marked = True
        return True

    def grouped(self, txn_start: BinlogPosition | None) -> None:
        """Rows joined the pending groups; `txn_start` is where their transaction began."""
        if self._group_start is None:
            self._group_start = txn_start

    def headers(self) -> list[tuple[str, bytes]]:
        """Headers of a message flushed now: origin mark and the binlog coordinates of its first row."""
        out = origin_headers(self.marked)
        if self._group_start is not None:
            out.append(binlog_header(self._group_start))
        return out

    def flushed(self) -> None:
        self._group_start = None

    def end_txn(self) -> None:
        self.marked = False

    def reset(self) -> None:
        self.marked = False
        self._group_start = None
