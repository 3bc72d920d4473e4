"""The capture event loop: each binlog event to its handler, in binlog order, until stopped.

Transaction boundaries (commit, DDL) close the grouper's groups (sink/grouping.py) and move the checkpointer's
boundary; records are confirmed and the checkpoint saved every `checkpoint_interval_s` at a boundary, at every
DDL, on a pause (heartbeat) and when stopping. Rows of tables we do not publish never get here (the reader's
filter); rows of the repair marker table only tag their transaction (source/origin.py).
"""

from __future__ import annotations

import threading
import time

from cdc_repair.model.position import BinlogPosition
from cdc_repair.sink.grouping import TransactionGrouper
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.source.binlog_reader import BinlogReader
from cdc_repair.source.checkpointer import Checkpointer
from cdc_repair.source.ddl import classify_ddl
from cdc_repair.source.events import Commit, Ddl, Gtid, Heartbeat, PartialRows, Rotate, RowsData, StatementRows
from cdc_repair.source.filters import TableMatcher
from cdc_repair.source.origin import TxnOrigin
from cdc_repair.source.publisher import Publisher
from cdc_repair.source.readiness import Readiness
from cdc_repair.source.uncapturable import UncapturableGuard

CONFIRM_EVERY_RECORDS = 20000  # bound the futures kept inside one huge transaction
# bound what kafka-python holds unacknowledged (3.x has no buffer_memory limit): while the binlog is read faster than
# the broker acknowledges (bulk INSERTs), the producer's queue otherwise grows until the next checkpoint (peak RSS)
CONFIRM_EVERY_BYTES = 16 << 20


class StreamLoop:
    """One stream session's dispatch; the per-transaction state lives in the grouper and the origin."""

    def __init__(self, *, sink: KafkaSink, grouper: TransactionGrouper, origin: TxnOrigin, publisher: Publisher,
                 checkpointer: Checkpointer, guard: UncapturableGuard, readiness: Readiness, matcher: TableMatcher,
                 checkpoint_interval_s: float) -> None:
        self.sink = sink
        self.grouper = grouper
        self.origin = origin
        self.publisher = publisher
        self.checkpointer = checkpointer
        self.guard = guard
        self.readiness = readiness
        self.matcher = matcher
        self.interval_s = checkpoint_interval_s
        self.in_txn = False
        self._last_ckpt = time.monotonic()

    def run(self, reader: BinlogReader, stop: threading.Event) -> None:
        self._last_ckpt = time.monotonic()
        self.readiness.ready.set()
        sink = self.sink
        for ev in reader.events():
            if isinstance(ev, RowsData):
                self._rows(ev)
                if sink.pending > CONFIRM_EVERY_RECORDS or sink.pending_bytes > CONFIRM_EVERY_BYTES:
                    self.settle(stop)
            elif isinstance(ev, Commit):
                self._commit(ev, stop)
            elif isinstance(ev, Gtid):
                self.in_txn = True
                self.grouper.begin(ev.gtid)
            elif isinstance(ev, Ddl):
                self._ddl(ev, stop)
            elif isinstance(ev, Heartbeat):
                self._heartbeat(stop)
            elif isinstance(ev, Rotate) and not self.in_txn:
                self.checkpointer.boundary = ev.position
            elif isinstance(ev, StatementRows):  # not publishable: requests a full validation (durably, now)
                self.guard.on_statement(ev, self.checkpointer.boundary)
            elif isinstance(ev, PartialRows):  # fails, or is skipped with a full validation requested
                self.guard.on_partial(ev, self.checkpointer.boundary)
            if stop.is_set():
                break
        self.publisher.flush(self.grouper)
        self.checkpoint(stop, force=True)

    def _rows(self, ev: RowsData) -> None:
        self.in_txn = True
        decoder = ev.decoder
        if self.origin.rows(decoder.schema.table, decoder.names, self._flush):
            return  # a repair's marker row: not published, it tags the transaction's other rows
        self.publisher.rows(ev, self.grouper, self.checkpointer.boundary)

    def _commit(self, ev: Commit, stop: threading.Event) -> None:
        publisher = self.publisher
        publisher.send_groups(self.grouper.commit())
        if self.origin.marked:
            self._flush()  # a repair's rows never share a message with the next transaction's
        elif publisher.outbox.due():
            publisher.drain()
        self._end_txn(ev.position, ev.timestamp)
        if ev.timestamp:
            self.readiness.lag_since(ev.timestamp)
        now = time.monotonic()
        if now - self._last_ckpt >= self.interval_s:
            self._flush()
            self.checkpoint(stop)
            self._last_ckpt = now
        self.guard.tick()

    def _ddl(self, ev: Ddl, stop: threading.Event) -> None:
        self._flush()
        info = classify_ddl(ev.sql, ev.schema)
        if info is not None and (self.matcher(info.database, info.table) if info.table
                                 else self.matcher.schema_included(info.database)):
            self.publisher.ddl(info, ev.sql, ev.timestamp, self.grouper)
        self.grouper.commit()
        self._end_txn(ev.position, ev.timestamp)
        self.checkpoint(stop, force=True)
        self._last_ckpt = time.monotonic()

    def _heartbeat(self, stop: threading.Event) -> None:
        self.guard.tick()
        self._flush()
        self.readiness.lag(0.0)  # the server had nothing more to send: we are caught up
        checkpointer = self.checkpointer
        if not self.in_txn and checkpointer.boundary != checkpointer.saved and \
                time.monotonic() - self._last_ckpt >= self.interval_s:
            self.checkpoint(stop)
            self._last_ckpt = time.monotonic()

    def _end_txn(self, position: BinlogPosition, timestamp: int) -> None:
        self.origin.end_txn()
        self.in_txn = False
        self.checkpointer.reached(position, float(timestamp))

    def _flush(self) -> None:
        self.publisher.flush(self.grouper)

    def confirm(self, stop: threading.Event) -> bool:
        done = self.sink.confirm(stop)
        if done:  # acknowledgements flow again after a stall
            self.readiness.acknowledged(stop.is_set())
        return done

    def settle(self, stop: threading.Event) -> None:
        """Bound what the producer holds unacknowledged: wait for the oldest records down to half the bounds
        (the newest half keeps the producer busy meanwhile)."""
        if self.sink.settle(CONFIRM_EVERY_RECORDS // 2, CONFIRM_EVERY_BYTES // 2, stop):
            self.readiness.acknowledged(stop.is_set())

    def checkpoint(self, stop: threading.Event, *, force: bool = False) -> None:
        self.checkpointer.checkpoint(self.sink, self.confirm, stop, in_txn=self.in_txn, force=force)
