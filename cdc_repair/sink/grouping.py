"""Transaction grouping (pure): which rows share one FlatMessage, and which transaction the message names.

Canal's event buffer (`EventTransactionBuffer`) hands the MQ producer whole transactions, and Canal builds one
FlatMessage per rows event, split per partition: **a message never holds rows of two transactions**, and its
`gtid`/`es` are those of the transaction whose rows it holds. This module does the same by default
(`across_transactions=False`): consecutive rows events of one table and type *inside one transaction* are merged
(per partition, in binlog order, up to `max_rows` rows / `max_bytes` of row data), and everything open is closed
when the transaction commits.

`across_transactions=True` is the documented throughput option: a group of one table and type stays open across
commits until it is `max_age_s` old (checked at each commit), the table/type changes, a cap is reached, or the
caller flushes (heartbeat, DDL, checkpoint). Its `gtid`, `id` and `es` are then those of the *last* transaction
with rows in it: every transaction it holds is at or before that GTID.

No I/O and no Kafka here: the tailer feeds events in and sends the closed `Group`s it gets back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

Row = dict[str, str | None]


@dataclass(slots=True)
class Part:
    """The rows of one group that go to one partition (`olds` aligned with `rows` for UPDATE, else None), and
    the transaction of its last rows (a message names the last transaction whose rows *it* holds)."""

    rows: list[Row]
    olds: list[Row] | None
    es: int = 0
    gtid: str = ""
    txn_id: int = 0


@dataclass(slots=True)
class Group:
    """Rows of one table (one schema version) and one type, to become one FlatMessage per partition."""

    table: Hashable  # opaque to the grouper: the tailer passes its compiled table plan
    kind: str  # INSERT | UPDATE | DELETE
    started: float  # clock() when the group was opened (for the cross-transaction age limit)
    parts: dict[int, Part] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0
    events: int = 0  # rows events merged into it
    es: int = 0  # epoch ms of the last rows event in it (Canal: the event header's execute time)
    gtid: str = ""  # GTID of the (last) transaction whose rows it holds; "" without GTIDs
    txn_id: int = 0  # sequence number of that transaction in this stream (`Part` says the same of its own rows)
    txn_start: object = None  # opaque: where the transaction of its first row starts (the tailer's binlog position)


class TransactionGrouper:
    """Collects rows events into `Group`s; every method returns the groups that are complete and must be sent.

    Feed it, in binlog order: `begin(gtid)` at a GTID event, `add(...)` per rows event, `commit()` at XID/COMMIT,
    `flush()` whenever the caller must have everything sent (heartbeat, DDL, checkpoint, stop).
    """

    def __init__(self, *, across_transactions: bool = False, max_rows: int = 2000, max_bytes: int = 1 << 20,
                 max_age_s: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self.across_transactions = across_transactions
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self.txn_id = 0  # last transaction begun in this stream
        self.gtid = ""  # its GTID
        self.in_txn = False
        self._open: Group | None = None

    # ------------------------------------------------------------------ transaction boundaries

    def begin(self, gtid: str = "") -> None:
        """A transaction (or DDL) starts; `gtid` names it ("" when the server writes none)."""
        self.txn_id += 1
        self.gtid = gtid
        self.in_txn = True

    def commit(self) -> list[Group]:
        """The current transaction ended: its rows are complete (cross-transaction mode: only once old enough)."""
        self.in_txn = False
        self.gtid = ""  # a next transaction without a GTID event must not inherit this one's
        group = self._open
        if group is None:
            return []
        if self.across_transactions and self.clock() - group.started < self.max_age_s:
            return []
        self._open = None
        return [group]

    def flush(self) -> list[Group]:
        """Close the open group whatever its age (the caller is about to wait for acks or publish a DDL)."""
        group, self._open = self._open, None
        return [group] if group is not None else []

    def discard(self) -> None:
        """Forget unsent rows (after a stream error the caller re-reads them from an earlier position)."""
        self._open = None
        self.in_txn = False
        self.gtid = ""

    @property
    def pending(self) -> bool:
        """True while rows are held that no returned group carried yet."""
        return self._open is not None

    @property
    def pending_since(self) -> float | None:
        return self._open.started if self._open is not None else None

    # ------------------------------------------------------------------ rows

    def add(self, table: Hashable, kind: str, rows: list[Row], olds: list[Row] | None, partitions: list[int],
            es: int, nbytes: int, txn_start: object = None) -> list[Group]:
        """One rows event: `rows[i]` (and `olds[i]` for UPDATE) go to `partitions[i]`. Returns closed groups.
        The grouper takes ownership of the `rows`/`olds` lists (it may keep and extend them)."""
        if not self.in_txn:  # rows without a GTID event (GTIDs off): a transaction starts here
            self.begin("")
        closed: list[Group] = []
        group = self._open
        if group is not None and (group.table != table or group.kind != kind or group.rows >= self.max_rows
                                  or group.nbytes >= self.max_bytes):
            closed.append(group)
            group = None
        if group is None:
            group = self._open = Group(table, kind, self.clock(), txn_start=txn_start)
        parts = group.parts
        gtid, txn_id = self.gtid, self.txn_id
        if len(rows) == 1:  # the common single-row event: no loops
            p = partitions[0]
            part = parts.get(p)
            if part is None:
                part = parts[p] = Part(rows, olds)
            else:
                part.rows.append(rows[0])
                if olds is not None:
                    part.olds.append(olds[0])  # type: ignore[union-attr]  # UPDATE parts always have olds
            part.es, part.gtid, part.txn_id = es, gtid, txn_id
        elif olds is None:
            for row, p in zip(rows, partitions, strict=True):
                part = parts.get(p)
                if part is None:
                    parts[p] = Part([row], None)
                else:
                    part.rows.append(row)
        else:
            for row, old, p in zip(rows, olds, partitions, strict=True):
                part = parts.get(p)
                if part is None:
                    parts[p] = Part([row], [old])
                else:
                    part.rows.append(row)
                    part.olds.append(old)  # type: ignore[union-attr]  # UPDATE parts always have olds
        if len(rows) != 1:
            for p in set(partitions):
                part = parts[p]
                part.es, part.gtid, part.txn_id = es, gtid, txn_id
        group.rows += len(rows)
        group.nbytes += nbytes
        group.events += 1
        group.es = es
        group.gtid = gtid
        group.txn_id = txn_id
        return closed
