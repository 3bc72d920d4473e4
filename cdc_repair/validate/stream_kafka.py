"""The stream validator's side of Kafka: subscribe, connect (stoppable), commit, measure lag, dead letters.

Why apart from the validator: these are the calls that block on a broker, and each has a rule about what a
failure means — a commit that fails is retried by the next one (the offsets stay safe), a lag lookup that fails
keeps the last numbers, a dead letter that cannot be sent stops the validator before the malformed message's
offset is committed — while the validator's bookkeeping (validate/stream_keys.py) stays pure.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cdc_repair import metrics
from cdc_repair.config import KafkaConfig, Settings
from cdc_repair.errors import TransientError
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.sink.kafka_consumer import TP, Record
from cdc_repair.sink.partitioning import topic_for
from cdc_repair.validate.offsets import consumer_lag

log = logging.getLogger(__name__)

DEAD_LETTER_ATTEMPTS = 5


class Consumer(Protocol):
    """What the validator uses of `sink.kafka_consumer.GroupConsumer` (tests pass fakes)."""
    def poll(self, timeout_s: float, max_records: int | None = None) -> list[Record]: ...
    def commit(self, offsets: dict[TP, int]) -> None: ...
    def end_offsets(self, tps: list[TP]) -> dict[TP, int]: ...
    def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]: ...
    def committed(self, tps: list[TP]) -> dict[TP, int | None]: ...
    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...
    def close(self) -> None: ...


class DeadLetterSink(Protocol):
    """`sink.kafka_consumer.DeadLetters` (tests pass fakes)."""
    topic: str
    def send(self, record: Record, reason: str) -> None: ...
    def close(self) -> None: ...


def open_interruptibly(factory: Callable[[], Any], stop: threading.Event) -> Any:
    """`factory()` (which blocks until the broker answers, up to the client's bootstrap timeout), given up as
    soon as `stop` is set: a stop with the broker down must not wait for the client. A consumer that comes up
    after that is closed in the background. Errors of `factory()` are raised here; None when stopped."""
    done = threading.Event()
    lock = threading.Lock()
    result: dict[str, Any] = {}

    def build() -> None:
        try:
            consumer = factory()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc
            done.set()
            return
        with lock:
            abandoned = result.get("abandoned", False)
            result["consumer"] = consumer
        done.set()
        if abandoned:
            consumer.close()

    threading.Thread(target=build, name="validate-connect", daemon=True).start()
    while not done.wait(0.1):
        if stop.is_set():
            with lock:
                if "consumer" not in result:
                    result["abandoned"] = True
                    log.info("validate: stopped while connecting to the Kafka broker")
                    return None
            break
    if "error" in result:
        raise result["error"]
    return result["consumer"]


def pair_topics(settings: Settings) -> list[str]:
    """The topics carrying the pairs' source and target tables."""
    t = settings.kafka.topic
    names = {topic_for(t.mode, t.name, t.prefix, ref.schema_name, ref.table_name)
             for pair in settings.pairs for ref in (pair.source, pair.target)}
    return sorted(names)


def subscribe(settings: Settings, factory: Callable[..., Consumer], *, prepare: bool, **options: Any) -> Consumer:
    """`factory(kafka config, topics, **options)`; with `prepare`, the topics (data and dead-letter,
    `kafka.partitions` each) are created first, so no subscription auto-creates one with the broker's default
    count; a count that differs is one warning. A test's injected consumer has no broker to prepare."""
    k = settings.kafka
    if prepare:
        try:
            problems = ensure_topics(k.bootstrap_servers, [*pair_topics(settings), k.dead_letter_topic],
                                     k.partitions, k.replication_factor)
        except TransientError as exc:  # e.g. no CREATE permission: the topics may exist anyway
            problems = [f"{exc}; subscribing anyway"]
        for line in problems:
            log.warning("%s", line)
    consumer: Consumer = factory(k, pair_topics(settings), **options)
    return consumer


def send_dead_letter(dlq: DeadLetterSink, rec: Record, reason: str, stop: threading.Event) -> dict[str, Any]:
    """Send a malformed record to the dead-letter topic, retrying with backoff; raises when it cannot (on stop
    at once): the message then stays uncommitted and is read again later. Returns what the status page shows."""
    log.warning("validate: malformed message %s:%d@%d sent to %s: %s", rec.topic, rec.partition, rec.offset,
                dlq.topic, reason)
    short = reason.split(":", 1)[0][:60] if ":" in reason else "malformed"
    metrics.DEAD_LETTERS.labels(short).inc()
    for attempt in range(DEAD_LETTER_ATTEMPTS):
        try:
            dlq.send(rec, reason)
            break
        except Exception:
            if attempt == DEAD_LETTER_ATTEMPTS - 1 or stop.is_set():
                raise
            stop.wait(0.5 * 2**attempt)
    return {"reason": reason[:300], "at": time.time(), "topic": rec.topic, "partition": rec.partition,
            "offset": rec.offset}


class StreamKafka:
    """The group consumer (once opened), its offset commits, its consumer-lag gauge and the dead letters."""

    def __init__(self, config: KafkaConfig, dead_letters: DeadLetterSink) -> None:
        self.config = config
        self.dead_letters = dead_letters
        self.consumer: Consumer | None = None
        self.lag: dict[TP, int] | None = None  # None: not measured yet
        self.paused = False

    def open(self, factory: Callable[[], Consumer], stop: threading.Event) -> bool:
        """Connect and subscribe (see `open_interruptibly`); False when stopped first."""
        self.consumer = open_interruptibly(factory, stop)
        return self.consumer is not None

    def _c(self) -> Consumer:
        if self.consumer is None:
            raise RuntimeError("the Kafka consumer is not open")
        return self.consumer

    def poll(self, timeout_s: float, max_records: int | None) -> list[Record]:
        return self._c().poll(timeout_s, max_records)

    def pause(self, want: bool) -> None:
        """Stop fetching while keys pile up or checks fail (group membership is kept by polling)."""
        if want != self.paused:
            self._c().pause_all() if want else self._c().resume_all()
            self.paused = want

    def commit(self, offsets: dict[TP, int]) -> bool:
        """Commit; a failure (e.g. a rebalance in progress) is one warning, the next commit retries."""
        if self.consumer is None or not offsets:
            return False
        try:
            self.consumer.commit(offsets)
        except Exception as exc:
            metrics.ERRORS.labels("validate", type(exc).__name__).inc()
            log.warning("validate: offset commit failed (%s); will retry", exc)
            return False
        return True

    def dead_letter(self, rec: Record, reason: str, stop: threading.Event) -> dict[str, Any]:
        return send_dead_letter(self.dead_letters, rec, reason, stop)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.dead_letters.close()

    def refresh_lag(self, tps: list[TP], ours: dict[TP, int | None]) -> None:
        """Set `cdc_repair_validate_consumer_lag_messages` for `tps` from the broker's end offsets and the
        committed offsets (`ours`, else the group's); nothing where the broker's end offsets are known wrong."""
        if self.consumer is None or not self.config.end_offsets_exact:
            return
        try:
            ends = self.consumer.end_offsets(tps) if tps else {}
            committed = {tp: ours.get(tp) for tp in tps}
            unknown = [tp for tp, o in committed.items() if o is None]
            if unknown:
                committed.update(self.consumer.committed(unknown))
            never = [tp for tp, o in committed.items() if o is None]
            beginnings = self.consumer.beginning_offsets(never) if never else {}
        except TransientError as exc:  # the next refresh retries; the last numbers stay
            log.debug("validate: consumer lag not refreshed: %s", exc)
            return
        self.lag = consumer_lag(ends, committed, beginnings)
        for (topic, part), lag in self.lag.items():
            metrics.CONSUMER_LAG.labels(topic, str(part)).set(lag)

    def forget_lag(self, tps: list[TP]) -> None:
        """Partitions handed to another validator: their series go with them."""
        for tp in tps:
            if self.lag is not None:
                self.lag.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp[0], str(tp[1]))

    def lag_total(self) -> int | str | None:
        if not self.config.end_offsets_exact:
            return "unknown"
        return None if self.lag is None else sum(self.lag.values())
