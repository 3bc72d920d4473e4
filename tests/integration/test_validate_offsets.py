"""Validator offsets through the real broker: commit on rebalance, and a commit time from the future."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition
from test_validate_support import ART_INSERT, Env, Publisher, article, make_env, table_rows

from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer, broker: Broker) -> Iterator[Env]:
    topic = f"rows-{uuid.uuid4().hex[:8]}"
    ensure_topics([broker.bootstrap], [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    e = make_env(mariadb, bootstrap=broker.bootstrap, topic=topic,
                 extra={"validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.2, "rechecks": 2}})
    yield e
    e.drop()


class Running:
    """An IncrementalValidator in a thread."""

    def __init__(self, validator: IncrementalValidator) -> None:
        self.validator = validator
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.validator.run(self.stop)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def committed(env: Env) -> dict[int, int | None]:
    c = KafkaConsumer(bootstrap_servers=env.settings.kafka.bootstrap_servers,
                      group_id=env.settings.kafka.consumer.group_id, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(env.settings.kafka.topic.name, p)) for p in range(3)}
    finally:
        c.close()


def published_consistent(env: Env, n: int) -> Publisher:
    """n published articles, equal on both sides, each sent as an INSERT FlatMessage."""
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    rows = [article(i) for i in range(1, n + 1)]
    env.many(ART_INSERT.format(t=src), rows)
    env.many(ART_INSERT.format(t=tgt), rows)
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    pub.send_rows(env.author, "articles", table_rows(env, src))
    pub.flush()
    return pub


def test_rebalance_commits_the_revoked_partitions_and_the_new_owner_rereads_nothing(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Only the rebalance listener commits here (the periodic commit is off), as when a rebalance comes
    between two periodic commits: the partitions handed over must be committed at their durable offsets."""
    caplog.set_level(logging.WARNING)
    pub = published_consistent(env, 90)
    pub.close()
    first = Running(IncrementalValidator(env.settings, commit_interval_s=3600.0))
    second: Running | None = None
    try:
        wait_for(lambda: first.validator.stats["rows"] == 90 and first.validator.health()["pending_keys"] == 0,
                 what="90 keys checked by the first validator")
        durable = first.validator.safe_offsets()
        assert sum(durable.values()) > 0
        assert all(o is None for o in committed(env).values())  # nothing committed yet: the test's premise
        second = Running(IncrementalValidator(env.settings, commit_interval_s=3600.0))
        wait_for(lambda: bool(second is not None and second.validator.assigned), timeout=90,
                 what="the second validator to get partitions")
        time.sleep(2.0)  # the second validator would have fetched from the committed offsets by now
        handed_over = {p for (_t, p) in second.validator.assigned}
        got = committed(env)
        for (_topic, part), offset in durable.items():
            if part in handed_over:
                assert got[part] == offset, (part, got, durable)
        assert second.validator.stats["messages"] == 0  # nothing re-read
        failures = [r.getMessage() for r in caplog.records if "commit failed" in r.getMessage()]
        assert failures == []
    finally:
        first.close()
        if second is not None:
            second.close()


def test_a_commit_time_from_the_future_does_not_pin_the_partition(env: Env) -> None:
    """`es` far ahead (a bad message, or a source whose clock runs ahead): the key is still checked one settle
    delay after it was received, and its partition's offset is committed past it."""
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(1), article(2)])
    env.many(ART_INSERT.format(t=tgt), [article(1)])  # key 2 is missing in the target
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    pub.send_rows(env.author, "articles", table_rows(env, src), es_ms=99999999999999)
    pub.flush()
    pub.close()
    running = Running(IncrementalValidator(env.settings))
    try:
        wait_for(lambda: running.validator.stats["rows"] == 2, what="both keys read")
        wait_for(lambda: running.validator.health()["pending_keys"] == 0, timeout=30,
                 what="both keys checked within the settle delay of their arrival")
        wait_for(lambda: sum(o or 0 for o in committed(env).values()) == running.validator.stats["messages"],
                 timeout=30, what="offsets committed past the messages")
    finally:
        running.close()
