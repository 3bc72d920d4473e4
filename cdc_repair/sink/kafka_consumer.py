"""Kafka consumer-group adapter for the validator, and the dead-letter producer (kafka-python lives in sink/).

`GroupConsumer`: subscribe to topics in a consumer group with auto-commit **off**; `poll()` returns plain
`Record` values; `commit(offsets)` commits explicit next-offsets per partition (the validator commits only
what its ledger holds). Rebalance callbacks tell the validator which partitions it lost or got.

`DeadLetters`: sends a malformed record's original bytes to the dead-letter topic with the reason and its
origin in headers, and waits for the broker's acknowledgement (so the offset can be committed after it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from cdc_repair.config import KafkaConfig
from cdc_repair.errors import TransientError

log = logging.getLogger(__name__)

TP = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...] = ()  # e.g. the tailer's own-write mark and binlog coordinates

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: Callable[[list[TP]], None], on_assigned: Callable[[list[TP]], None]) -> None:
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.on_assigned([(tp.topic, tp.partition) for tp in assigned])


class GroupConsumer:
    def __init__(self, config: KafkaConfig, topics: Sequence[str], *, group_id: str | None = None,
                 on_revoked: Callable[[list[TP]], None] | None = None,
                 on_assigned: Callable[[list[TP]], None] | None = None, client_id: str = "cdc-repair-validate") -> None:
        c = config.consumer
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=list(config.bootstrap_servers), group_id=group_id or c.group_id,
                client_id=client_id, enable_auto_commit=False, auto_offset_reset=c.auto_offset_reset,
                session_timeout_ms=c.session_timeout_ms, heartbeat_interval_ms=c.heartbeat_interval_ms,
                max_poll_interval_ms=c.max_poll_interval_ms, max_poll_records=c.max_poll_records,
                fetch_max_bytes=max(52428800, config.producer.max_request_size * 2),
                max_partition_fetch_bytes=max(1048576, config.producer.max_request_size))
        except (KafkaError, OSError) as exc:
            raise TransientError(f"cannot reach the Kafka broker at {', '.join(config.bootstrap_servers)}: "
                                 f"{type(exc).__name__} (is it running?)") from None
        listener = _Listener(on_revoked or (lambda tps: None), on_assigned or (lambda tps: None))
        self._consumer.subscribe(list(topics), listener=listener)

    def poll(self, timeout_s: float, max_records: int | None = None) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[Record] = []
        for tp, msgs in batches.items():
            for m in msgs:
                out.append(Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp,
                                  tuple(m.headers or ())))
        return out

    def commit(self, offsets: dict[TP, int]) -> None:
        """Commit next-offsets (the first offset not yet durable) per partition."""
        if not offsets:
            return
        self._consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})

    def pause_all(self) -> None:
        """Stop fetching (group membership is kept by polling): backpressure while keys pile up."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def assignment(self) -> list[TP]:
        return [(tp.topic, tp.partition) for tp in self._consumer.assignment()]

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except Exception:  # closing is best effort
            log.debug("consumer close failed", exc_info=True)


class DeadLetters:
    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.topic = topic
        self._config = config
        self._producer: Any = None

    def send(self, record: Record, reason: str) -> None:
        """Send the record to the dead-letter topic and wait for the acknowledgement."""
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=list(self._config.bootstrap_servers), acks="all",
                                           max_request_size=self._config.producer.max_request_size)
        headers = [("reason", reason.encode()), ("source_topic", record.topic.encode()),
                   ("source_partition", str(record.partition).encode()),
                   ("source_offset", str(record.offset).encode())]
        try:
            self._producer.send(self.topic, key=record.key, value=record.value or b"", headers=headers).get(timeout=30)
        except KafkaError as exc:
            raise TransientError(f"cannot write to dead-letter topic {self.topic}: {type(exc).__name__}") from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
