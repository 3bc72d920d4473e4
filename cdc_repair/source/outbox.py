"""Encoded messages waiting to be handed to the producer in one burst (each message stays its own record).

Why a burst: one kafka-python `send` per record is cheap, but waking its sender thread for every new batch costs
a GIL hand-off per small transaction. Messages are held until `OUTBOX_RECORDS` or `OUTBOX_BYTES` are waiting
(the bytes bound keeps a huge transaction's messages from piling up here) or, at a commit, the oldest is
`max_age_s` old, and always before acks are awaited, a DDL is published or the stream pauses.
The capture counters (events, rows, bytes per table and type) and the lag are updated when the burst is sent.
"""

from __future__ import annotations

import time
from typing import Any

from cdc_repair import metrics
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.source.readiness import Readiness

OUTBOX_RECORDS = 1000
OUTBOX_BYTES = 4 << 20
Record = tuple[str, int, bytes | None, bytes, list[tuple[str, bytes]]]


class CaptureCounters:
    """`cdc_repair_captured_{events,rows,bytes}_total` children, looked up once per (table, type)."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def __call__(self, table: str, kind: str) -> tuple[Any, Any, Any]:
        hit = self._children.get((table, kind))
        if hit is None:
            hit = (metrics.CAPTURED_EVENTS.labels(table, kind), metrics.CAPTURED_ROWS.labels(table, kind),
                   metrics.CAPTURED_BYTES.labels(table, kind))
            self._children[(table, kind)] = hit
        return hit


class Outbox:
    def __init__(self, counters: CaptureCounters, readiness: Readiness, *, max_age_s: float) -> None:
        self.counters = counters
        self.readiness = readiness
        self.max_age_s = max_age_s
        self.clear()

    def clear(self) -> None:
        self.records: list[Record] = []
        self._bytes = 0
        self._since = 0.0
        self._counts: dict[tuple[str, str], list[int]] = {}  # counted when the outbox drains
        self._es = 0

    def add(self, record: Record) -> None:
        if not self.records:
            self._since = time.monotonic()
        self.records.append(record)
        self._bytes += len(record[3])

    def count(self, table: str, kind: str, events: int, rows: int, nbytes: int, es: int) -> None:
        counts = self._counts.get((table, kind))
        if counts is None:
            self._counts[(table, kind)] = [events, rows, nbytes]
        else:
            counts[0] += events
            counts[1] += rows
            counts[2] += nbytes
        if es:
            self._es = es

    @property
    def full(self) -> bool:
        return len(self.records) >= OUTBOX_RECORDS or self._bytes >= OUTBOX_BYTES

    def due(self) -> bool:
        """Something is waiting and the oldest message is old enough to go at this commit."""
        return bool(self.records) and time.monotonic() - self._since >= self.max_age_s

    def drain(self, sink: KafkaSink) -> None:
        records = self.records
        if records:
            sink.send_burst(records)
            self.records = []
            self._bytes = 0
        for (table, kind), (events, rows, nbytes) in self._counts.items():
            children = self.counters(table, kind)
            children[0].inc(events)
            children[1].inc(rows)
            children[2].inc(nbytes)
        self._counts = {}
        if self._es:  # lag of the last row event handed to Kafka
            self.readiness.lag_since(self._es / 1000)
            self._es = 0
