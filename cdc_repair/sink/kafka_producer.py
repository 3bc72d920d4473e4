"""Kafka producer for capture (kafka-python lives only under sink/): ordered, acks=all, never loses a record.

`send()` queues a record on an explicit partition; `confirm()` blocks until the broker acknowledged every record
sent so far and raises `ProduceFailed` if any failed, so the tailer only checkpoints what Kafka holds; `settle()`
waits only for the oldest ones, to bound what is held in memory without draining the producer. While the
broker does not answer, both keep waiting and retrying, log where they are stuck every few seconds and call
`on_stall` (the tailer goes not-ready). Idempotence is on and in-flight requests are capped so retries cannot
reorder a partition.

A sink that failed stays failed: every later `send()`/`confirm()` raises `ProduceFailed` again, so nobody can
mistake "nothing pending" for "everything acknowledged" after a rejection. It is also given up on when no record
was acknowledged for `ack_deadline_s` while some are pending (a broker restarted without our producer's state
answers `UnknownProducerIdError` forever): the caller then starts over from its last acknowledged transaction
with a new producer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.record import util as record_util

from cdc_repair.config import KafkaConfig
from cdc_repair.errors import TerminalError, TransientError, UnreachableError
from cdc_repair.metrics import PRODUCE_ERRORS, PRODUCE_LATENCY

log = logging.getLogger(__name__)


class ProduceFailed(TransientError):
    """A record was not acknowledged; the tailer re-reads from its checkpoint (duplicates, no loss)."""


def c_crc32c_enabled() -> bool:
    """kafka-python computes CRC32C in pure Python unless the `crc32c` C package is importable (~7x slower)."""
    return getattr(record_util, "crc32c_c", None) is not None


def ack_deadline_s(config: KafkaConfig) -> float:
    """How long pending records may go without a single acknowledgement before the producer is given up on:
    two request timeouts (the producer's own retries get that long), at least 10 s."""
    return max(10.0, 2 * config.producer.request_timeout_ms / 1000)


def _no_wakeup() -> None:
    """Stands in for the sender's wake-up during `KafkaSink.send_burst`."""


class KafkaSink:
    def __init__(self, config: KafkaConfig, *, client_id: str = "cdc-repair-tail", log_every_s: float = 5.0,
                 on_stall: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.client_id = client_id
        self.log_every_s = log_every_s
        self.ack_deadline_s = ack_deadline_s(config)
        self.on_stall = on_stall
        self.sent = 0  # records queued by this sink (the tailer saves a checkpoint only after new ones)
        self.pending_bytes = 0  # value bytes sent and not yet confirmed (kafka-python holds them until acked)
        self._producer: Any = None
        self._pending: deque[Any] = deque()  # produce futures, oldest first
        self._pending_sizes: deque[int] = deque()  # their value sizes
        self._failure: str | None = None
        if not c_crc32c_enabled():
            log.warning("kafka-python uses pure-Python CRC32C (install the crc32c package: ~7x faster produce)")

    # ------------------------------------------------------------------ connection

    def connect(self, stop: threading.Event | None = None) -> None:
        """Create the producer, retrying with backoff (and a log line per attempt) until a broker answers."""
        delay = 1.0
        where = ", ".join(self.config.bootstrap_servers)
        while self._producer is None:
            try:
                self._producer = self._new_producer()
            except (KafkaError, OSError) as exc:
                PRODUCE_ERRORS.labels("unreachable").inc()
                log.warning("Kafka broker at %s unreachable (%s); retrying in %.0fs", where, type(exc).__name__, delay)
                if stop is not None and stop.wait(delay):
                    raise UnreachableError(f"stopped while waiting for the Kafka broker at {where}") from None
                if stop is None:
                    time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _new_producer(self) -> Any:
        p = self.config.producer
        acks: Any = "all" if p.acks in ("all", -1) else int(p.acks)
        return KafkaProducer(
            bootstrap_servers=list(self.config.bootstrap_servers), client_id=self.client_id, acks=acks,
            linger_ms=p.linger_ms, batch_size=p.batch_size,
            compression_type=None if p.compression_type == "none" else p.compression_type,
            request_timeout_ms=p.request_timeout_ms, max_request_size=p.max_request_size,
            max_in_flight_requests_per_connection=1, retries=2**31 - 1, retry_backoff_ms=200,
            delivery_timeout_ms=max(120000, p.request_timeout_ms + p.linger_ms + 1000),
            max_block_ms=5000, metrics_enabled=False, bootstrap_timeout_ms=5000,
        )

    def partitions(self, topic: str) -> int:
        """Partition count of `topic` from broker metadata (waits for the broker like `connect`)."""
        assert self._producer is not None, "connect() first"
        started = time.monotonic()
        while True:
            try:
                found = self._producer.partitions_for(topic)
                if found:
                    return len(found)
            except KafkaTimeoutError:
                pass
            waited = time.monotonic() - started
            if waited >= self.ack_deadline_s:  # the caller retries with a new producer (and its own backoff)
                raise UnreachableError(f"no metadata for topic {topic} from Kafka at "
                                       f"{', '.join(self.config.bootstrap_servers)} for {waited:.0f}s")
            log.warning("no metadata yet for topic %s; retrying", topic)
            self._stalled(f"no metadata for topic {topic} from Kafka for {waited:.0f}s")
            time.sleep(1.0)

    # ------------------------------------------------------------------ produce

    def send(self, topic: str, partition: int, key: bytes | None, value: bytes,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record (blocks, logging, while the producer buffer is full because the broker is down).
        `headers`: the tailer's own-write mark and binlog coordinates (see source/origin.py)."""
        if len(value) > self.config.producer.max_request_size - 512:
            raise TerminalError(f"a {len(value)}-byte message for {topic} exceeds kafka.producer.max_request_size "
                                f"({self.config.producer.max_request_size}); raise it (and the broker's limit)")
        self._raise_if_failed()
        producer = self._producer
        waited = 0.0
        while True:
            try:
                self._pending.append(producer.send(topic, value=value, key=key, partition=partition,
                                                   headers=headers or None))
                self._pending_sizes.append(len(value))
                self.sent += 1
                self.pending_bytes += len(value)
                return
            except KafkaTimeoutError:
                waited += 5.0
                PRODUCE_ERRORS.labels("buffer_full").inc()
                where = ", ".join(self.config.bootstrap_servers)
                log.warning("Kafka producer buffer full for %.0fs: broker at %s not acknowledging; still retrying",
                            waited, where)
                self._stalled(f"Kafka at {where} not acknowledging: producer buffer full for {waited:.0f}s")
                if waited >= self.ack_deadline_s:
                    self._fail(f"Kafka at {where} acknowledged nothing for {waited:.0f}s (producer buffer full); "
                               f"starting over from the last acknowledged transaction with a new producer")

    def send_burst(self, records: Sequence[tuple[str, int, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """`send` each of (topic, partition, key, value, headers), waking the producer's sender thread once.

        Why: kafka-python wakes its sender thread for every new batch, and each wake-up is a GIL hand-off in the
        middle of the burst (the sender then holds the GIL for up to the interpreter's switch interval); one
        wake-up after the burst also lets the sender take the burst as a few large batches. Topic metadata is
        made sure of first (the one other reason `send` wakes the sender); without it, records go one by one.
        """
        producer = self._producer
        try:
            for topic in {r[0] for r in records}:
                producer.partitions_for(topic)
        except KafkaError:
            for topic, partition, key, value, headers in records:
                self.send(topic, partition, key, value, headers)
            return
        sender = producer._sender
        sender.wakeup = _no_wakeup  # an instance attribute shadowing the method for the burst
        try:
            for topic, partition, key, value, headers in records:
                self.send(topic, partition, key, value, headers)
        finally:
            del sender.wakeup
            sender.wakeup()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def confirm(self, stop: threading.Event | None = None, give_up_after_stop_s: float = 10.0) -> bool:
        """Wait until every record sent so far is acknowledged. True when all are; False if stopped first.

        Raises `ProduceFailed` when the broker rejected a record (after the producer's own retries), when no
        record was acknowledged for `ack_deadline_s`, or when this sink failed before.
        """
        self._raise_if_failed()
        if not self._pending:
            return True
        started = progress_at = time.monotonic()
        acked_before = 0
        stop_seen: float | None = None
        where = ", ".join(self.config.bootstrap_servers)
        while True:
            try:
                self._producer.flush(timeout=self.log_every_s)
                if all(f.is_done for f in self._pending):  # flush() covers batches, check every record
                    break
                time.sleep(0.001)
                continue
            except KafkaTimeoutError:
                now = time.monotonic()
                acked = sum(1 for f in self._pending if f.is_done)
                if acked > acked_before:
                    acked_before, progress_at = acked, now
                self._waiting(len(self._pending) - acked, now - started)
                if stop is not None and stop.is_set():
                    stop_seen = stop_seen or now
                    if now - stop_seen >= give_up_after_stop_s:
                        return False
                if now - progress_at >= self.ack_deadline_s:
                    self._fail(f"Kafka at {where} acknowledged none of {len(self._pending) - acked} records for "
                               f"{now - progress_at:.0f}s; starting over from the last acknowledged transaction "
                               f"with a new producer")
        PRODUCE_LATENCY.observe(time.monotonic() - started)
        failed = [f for f in self._pending if f.failed()]
        if failed:
            PRODUCE_ERRORS.labels("rejected").inc(len(failed))
            self._fail(f"Kafka rejected {len(failed)} record(s): {failed[0].exception!r}")
        self._pending.clear()
        self._pending_sizes.clear()
        self.pending_bytes = 0
        return True

    def settle(self, max_records: int, max_bytes: int, stop: threading.Event | None = None) -> bool:
        """Wait until at most `max_records` / `max_bytes` of what was sent is unacknowledged, oldest first. True
        when it is; False if stopped first. Fails as `confirm` does.

        Why not `confirm`: it waits for the newest record, so the binlog reader idles while the producer drains,
        then the producer idles while the reader refills (a quarter of a bulk INSERT's time). Bounding memory needs
        only the oldest records acknowledged; a checkpoint still waits for all of them (`confirm`).
        """
        self._raise_if_failed()
        pending, sizes = self._pending, self._pending_sizes
        started = progress_at = time.monotonic()
        stop_seen: float | None = None
        while pending and (len(pending) > max_records or self.pending_bytes > max_bytes):
            head = pending[0]
            if head.is_done:
                if head.failed():
                    PRODUCE_ERRORS.labels("rejected").inc()
                    self._fail(f"Kafka rejected a record: {head.exception!r}")
                pending.popleft()
                self.pending_bytes -= sizes.popleft()
                progress_at = time.monotonic()
                continue
            try:
                head.get(timeout=self.log_every_s)
            except KafkaTimeoutError:
                now = time.monotonic()
                self._waiting(len(pending), now - started)
                if stop is not None and stop.is_set():
                    stop_seen = stop_seen or now
                    if now - stop_seen >= 10.0:
                        return False
                if now - progress_at >= self.ack_deadline_s:
                    self._fail(f"Kafka at {self._where} acknowledged none of {len(pending)} records for "
                               f"{now - progress_at:.0f}s; starting over from the last acknowledged transaction "
                               f"with a new producer")
            except Exception:  # a failed record: `head.failed()` above reports it
                if not head.is_done:
                    time.sleep(0.001)
        return True

    @property
    def _where(self) -> str:
        return ", ".join(self.config.bootstrap_servers)

    def _waiting(self, unacked: int, waited_s: float) -> None:
        PRODUCE_ERRORS.labels("ack_timeout").inc()
        log.warning("waiting %.0fs for Kafka at %s to acknowledge %d records (checkpoint held; retrying)",
                    waited_s, self._where, unacked)
        self._stalled(f"Kafka at {self._where} not acknowledging {unacked} records for {waited_s:.0f}s")

    def _stalled(self, reason: str) -> None:
        if self.on_stall is not None:
            self.on_stall(reason)

    def _fail(self, reason: str) -> None:
        """Remember the failure (the pending records stay unacknowledged) and raise it."""
        self._failure = reason
        raise ProduceFailed(reason)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise ProduceFailed(self._failure)

    def ensure_topics(self, names: Sequence[str], partitions: int, replication_factor: int) -> None:
        from cdc_repair.sink.kafka_admin import ensure_topics

        ensure_topics(self.config.bootstrap_servers, list(names), partitions, replication_factor)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout_s)
            except Exception:  # closing during a broker outage must not mask why we stopped
                log.debug("error closing the Kafka producer", exc_info=True)
            self._producer = None
            self._pending.clear()
            self._pending_sizes.clear()
            self.pending_bytes = 0
