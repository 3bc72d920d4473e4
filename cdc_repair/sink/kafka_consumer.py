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
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from cdc_repair.config import KafkaConfig
from cdc_repair.errors import TransientError
from cdc_repair.sink.kafka_admin import tcp_open

log = logging.getLogger(__name__)

TP = tuple[str, int]  # (topic, partition)
COMMIT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 3.0
LOOKUP_TIMEOUT_S = 3.0


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


RevokeHandler = Callable[[list[TP]], dict[TP, int] | None]


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance hooks. kafka-python runs them on its IO thread, where a blocking `commit()` fails ("Cannot block
    on net.run() from the IO thread itself"); so the listener is the async kind and awaits the commit there,
    before the partitions go to their new owner (the consumer's caller thread is blocked in `poll()` meanwhile)."""

    def __init__(self, owner: GroupConsumer, on_revoked: RevokeHandler,
                 on_assigned: Callable[[list[TP]], None]) -> None:
        self.owner = owner
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self.on_revoked([(tp.topic, tp.partition) for tp in revoked]) or {}
        await self.owner.commit_during_rebalance(offsets)

    async def on_partitions_lost(self, lost: Any) -> None:
        # The group has moved on already: a commit would be refused, so the state is only dropped.
        self.on_revoked([(tp.topic, tp.partition) for tp in lost])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.on_assigned([(tp.topic, tp.partition) for tp in assigned])


class GroupConsumer:
    def __init__(self, config: KafkaConfig, topics: Sequence[str], *, group_id: str | None = None,
                 on_revoked: RevokeHandler | None = None,
                 on_assigned: Callable[[list[TP]], None] | None = None, client_id: str = "cdc-repair-validate") -> None:
        c = config.consumer
        self._closing = False
        if not any(tcp_open(a) for a in config.bootstrap_servers):
            # Fail at once: the client would wait for its bootstrap timeout and leave its IO thread behind.
            raise TransientError(f"cannot reach the Kafka broker at {', '.join(config.bootstrap_servers)}: "
                                 f"connection refused or timed out (is it running?)")
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=list(config.bootstrap_servers), group_id=group_id or c.group_id,
                client_id=client_id, enable_auto_commit=False, auto_offset_reset=c.auto_offset_reset,
                allow_auto_create_topics=False,  # topics are created with kafka.partitions, never by a subscription
                session_timeout_ms=c.session_timeout_ms, heartbeat_interval_ms=c.heartbeat_interval_ms,
                max_poll_interval_ms=c.max_poll_interval_ms, max_poll_records=c.max_poll_records,
                fetch_max_bytes=max(52428800, config.producer.max_request_size * 2),
                max_partition_fetch_bytes=max(1048576, config.producer.max_request_size))
        except (KafkaError, OSError) as exc:
            raise TransientError(f"cannot reach the Kafka broker at {', '.join(config.bootstrap_servers)}: "
                                 f"{type(exc).__name__} (is it running?)") from None
        listener = _Listener(self, on_revoked or (lambda tps: None), on_assigned or (lambda tps: None))
        self._consumer.subscribe(list(topics), listener=listener)

    def poll(self, timeout_s: float, max_records: int | None = None) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[Record] = []
        for tp, msgs in batches.items():
            for m in msgs:
                out.append(Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp,
                                  tuple(m.headers or ())))
        return out

    def commit(self, offsets: dict[TP, int], timeout_s: float = COMMIT_TIMEOUT_S) -> None:
        """Commit next-offsets (the first offset not yet durable) per partition, waiting at most `timeout_s`
        (not the client's 30 s request timeout: a caller with the broker down must still see its stop)."""
        if not offsets:
            return
        self._consumer.commit(_kafka_offsets(offsets), timeout_ms=int(timeout_s * 1000))

    async def commit_during_rebalance(self, offsets: dict[TP, int]) -> None:
        """Commit from inside a rebalance listener (on kafka-python's IO thread): awaited, never blocking.

        A failure is one warning line: the new owner then re-reads from the last committed offsets, which is
        safe (at-least-once) but repeats work."""
        if not offsets or self._closing:  # closing: the caller's last commit already tried; do not wait again
            return
        try:
            await self._consumer.commit_async(_kafka_offsets(offsets))
        except KafkaError as exc:
            log.warning("offset commit on rebalance failed for %s (%s); the new owner re-checks those messages",
                        ", ".join(f"{t}:{p}" for t, p in sorted(offsets)), type(exc).__name__)

    def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        """The broker's end offset (the next offset to be written) per partition."""
        found = self._ask(self._consumer.end_offsets, [TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(o) for tp, o in found.items() if o is not None}

    def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        found = self._ask(self._consumer.beginning_offsets, [TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(o) for tp, o in found.items() if o is not None}

    def committed(self, tps: list[TP]) -> dict[TP, int | None]:
        """The group's committed offset per partition (None: never committed)."""
        return {(t, p): self._ask(self._consumer.committed, TopicPartition(t, p)) for t, p in tps}

    @staticmethod
    def _ask(call: Callable[..., Any], arg: Any) -> Any:
        """One offsets lookup, bounded by LOOKUP_TIMEOUT_S (a down broker must not hold the caller's loop)."""
        try:
            return call(arg, timeout_ms=int(LOOKUP_TIMEOUT_S * 1000))
        except KafkaError as exc:
            raise TransientError(f"Kafka offsets lookup failed: {type(exc).__name__}") from None

    def pause_all(self) -> None:
        """Stop fetching (group membership is kept by polling): backpressure while keys pile up."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def assignment(self) -> list[TP]:
        return [(tp.topic, tp.partition) for tp in self._consumer.assignment()]

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        self._closing = True
        try:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        except Exception:  # closing is best effort
            log.debug("consumer close failed", exc_info=True)


def _kafka_offsets(offsets: dict[TP, int]) -> dict[Any, Any]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


class DeadLetters:
    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.topic = topic
        self._config = config
        self._producer: Any = None

    def send(self, record: Record, reason: str) -> None:
        """Send the record to the dead-letter topic and wait for the acknowledgement."""
        if self._producer is None:
            if not any(tcp_open(a) for a in self._config.bootstrap_servers):  # fail fast, do not hang in bootstrap
                raise TransientError(f"cannot write to dead-letter topic {self.topic}: no Kafka broker answers")
            self._producer = KafkaProducer(bootstrap_servers=list(self._config.bootstrap_servers), acks="all",
                                           max_request_size=self._config.producer.max_request_size)
        headers = [("reason", reason.encode()), ("source_topic", record.topic.encode()),
                   ("source_partition", str(record.partition).encode()),
                   ("source_offset", str(record.offset).encode())]
        try:
            self._producer.send(self.topic, key=record.key, value=record.value or b"", headers=headers).get(timeout=10)
        except KafkaError as exc:
            raise TransientError(f"cannot write to dead-letter topic {self.topic}: {type(exc).__name__}") from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
