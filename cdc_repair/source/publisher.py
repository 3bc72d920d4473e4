"""Rows and DDL → Canal FlatMessages on their partitions (codec: sink/flat_message.py, partitions:
sink/partitioning.py, grouping: sink/grouping.py), handed to the producer through the outbox.

Each group of rows (one table and type, one transaction by default) becomes one message per partition. A message
over the producer's `max_request_size` is split in halves; a single row still too large is published with its
largest values replaced by a marker (model/oversized.py), counted and logged, and the validator reads the real
row from the database. Every row message carries the origin headers of source/origin.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import CaptureConfig, KafkaConfig
from cdc_repair.model.oversized import OVERSIZED_FIELD, OVERSIZED_MARKER, shrink_images
from cdc_repair.sink.flat_message import (
    Row,
    dml_fields,
    encode_ddl,
    encode_fields,
    image_rows,
    update_rows,
    widened_sql_type,
)
from cdc_repair.sink.grouping import Group, Part, TransactionGrouper
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.sink.partitioning import hash_seed, key_bytes, partitions_of
from cdc_repair.source.ddl import DdlInfo
from cdc_repair.source.declared_types import DeclaredTypes
from cdc_repair.source.decoder import RowDecoder
from cdc_repair.source.events import RowsData
from cdc_repair.source.origin import TxnOrigin
from cdc_repair.source.outbox import CaptureCounters, Outbox
from cdc_repair.source.topics import Topics

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, source: str, capture: CaptureConfig, kafka: KafkaConfig, *, topics: Topics,
                 outbox: Outbox, counters: CaptureCounters, declared: DeclaredTypes, origin: TxnOrigin) -> None:
        self.source = source
        self.capture = capture
        self.kafka = kafka
        self.topics = topics
        self.outbox = outbox
        self.counters = counters
        self.declared = declared
        self.origin = origin
        self.sink: KafkaSink | None = None
        self._max_message = kafka.producer.max_request_size - 1024  # a larger group is split in halves
        self._seeds: dict[str, int] = {}

    # ------------------------------------------------------------------ rows

    def rows(self, ev: RowsData, grouper: TransactionGrouper, txn_start: object) -> None:
        """Decode one rows event, partition its rows and hand them to the grouper (sending what it closes)."""
        decoder = ev.decoder
        images = decoder.images(ev.body, ev.start, ev.end)
        if ev.kind == "UPDATE":
            rows, olds = update_rows(decoder.names, images)
            keyed = images[1::2]  # Canal hashes the after-image
        else:
            rows, olds, keyed = image_rows(decoder.names, images), None, images
        schema = decoder.schema
        seed = self._seeds.get(schema.database)
        if seed is None:
            seed = self._seeds[schema.database] = hash_seed(schema.database, self.capture.partition_hash)
        count = self.topics.partitions(self.topics.name(schema.database, schema.table))
        partitions = partitions_of(keyed, decoder.pk_indexes, count, seed)
        self.send_groups(grouper.add(decoder, ev.kind, rows, olds, partitions, ev.timestamp * 1000,
                                     ev.end - ev.start, txn_start=txn_start))

    def send_groups(self, groups: list[Group]) -> None:
        for group in groups:
            self._send_group(group)

    def flush(self, grouper: TransactionGrouper) -> None:
        """Send every row held by the grouper and the outbox (before waiting for acks, a DDL, or on a pause)."""
        self.send_groups(grouper.flush())
        self.drain()

    def drain(self) -> None:
        assert self.sink is not None, "streaming without a producer"
        self.outbox.drain(self.sink)

    def _send_group(self, group: Group) -> None:
        decoder: RowDecoder = group.table  # type: ignore[assignment]  # the tailer keys groups by table plan
        schema = decoder.schema
        topic = self.topics.name(schema.database, schema.table)
        mysql_type = self.declared.mysql_type(decoder)
        ts = int(time.time() * 1000)
        self.origin.grouped(group.txn_start)  # type: ignore[arg-type]  # the tailer passes BinlogPosition | None
        headers = self.origin.headers()  # repair mark, and where the group's first transaction starts
        self.origin.flushed()
        total = 0
        for p, part in group.parts.items():
            total += self._send_rows(topic, p, decoder, group.kind, part, part.rows, part.olds, mysql_type, ts,
                                     headers)
        self.outbox.count(schema.qualified, group.kind, group.events, group.rows, total, group.es)
        if self.outbox.full:
            self.drain()

    def _send_rows(self, topic: str, partition: int, decoder: RowDecoder, kind: str, part: Part, rows: list[Row],
                   olds: list[Row] | None, mysql_type: dict[str, str], ts: int,
                   headers: list[tuple[str, bytes]]) -> int:
        schema = decoder.schema
        fields = dml_fields(database=schema.database, table=schema.table, kind=kind, rows=rows, olds=olds,
                            pk_names=decoder.pk_names, mysql_type=mysql_type,
                            sql_type=widened_sql_type(decoder.sql_type, decoder.unsigned_ints, rows),
                            es=part.es, ts=ts, id=part.txn_id, gtid=part.gtid)
        value = encode_fields(fields)
        limit = self._max_message
        if len(value) > limit and len(rows) == 1:
            value = self._mark_oversized(fields, decoder, len(value), limit)
        if len(rows) > 1 and len(value) > limit:
            half = len(rows) // 2
            return (self._send_rows(topic, partition, decoder, kind, part, rows[:half],
                                    olds[:half] if olds else None, mysql_type, ts, headers)
                    + self._send_rows(topic, partition, decoder, kind, part, rows[half:],
                                      olds[half:] if olds else None, mysql_type, ts, headers))
        key = key_bytes([rows[0][n] for n in decoder.pk_names]) if len(rows) == 1 and decoder.pk_names else None
        self.outbox.add((topic, partition, key, value, headers))
        return len(value)

    def _mark_oversized(self, fields: dict[str, Any], decoder: RowDecoder, size: int, limit: int) -> bytes:
        """One row too large for a Kafka record: publish it with its largest values replaced by the marker
        (model/oversized.py), counted and logged; the validator reads the real row from the database."""
        olds = fields["old"]
        keys = decoder.pk_names or []
        images, replaced = shrink_images([fields["data"][0], olds[0] if olds else None], size - limit, keep=keys)
        fields["data"] = [images[0]]
        if olds:
            fields["old"] = [images[1]]
        fields[OVERSIZED_FIELD] = replaced
        value = encode_fields(fields)
        table = decoder.schema.qualified
        metrics.CAPTURE_OVERSIZED.labels(table).inc()
        key = ", ".join(f"{n}={images[0].get(n) if images[0] else None}" for n in keys) or "without a key"
        log.warning("capture %s: %s of %s row %s (gtid %s) is %d bytes as a FlatMessage, over "
                    "kafka.producer.max_request_size (%d): published with %s replaced by %r; validation reads the "
                    "row from the database", self.source, fields["type"], table, key, fields["gtid"] or "-", size,
                    self.kafka.producer.max_request_size, ", ".join(replaced), OVERSIZED_MARKER)
        return value

    # ------------------------------------------------------------------ DDL

    def ddl(self, info: DdlInfo, sql: str, timestamp: int, grouper: TransactionGrouper) -> None:
        """One DDL message on partition 0 of its topic (the caller flushed every row before it)."""
        topic = self.topics.name(info.database, info.table)
        if not self.topics.known(topic):
            self.topics.ensure(topic)
        if not grouper.in_txn:  # no GTID event before it (GTIDs off): the DDL is a transaction of its own
            grouper.begin("")
        value = encode_ddl(database=info.database, table=info.table, kind=info.type, sql=sql, es=timestamp * 1000,
                           ts=int(time.time() * 1000), id=grouper.txn_id, gtid=grouper.gtid)
        assert self.sink is not None, "streaming without a producer"
        self.sink.send(topic, 0, None, value)
        self.counters(f"{info.database}.{info.table}" if info.table else info.database, info.type)[0].inc()
        log.info("capture %s: DDL %s on %s.%s published", self.source, info.type, info.database, info.table or "*")
