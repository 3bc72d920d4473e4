"""Incremental validation through the real broker: planted divergences, dead letters, offsets, restarts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from test_validate_support import (
    Env,
    Publisher,
    make_env,
    plant_articles,
    plant_items,
    table_rows,
)

from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.state import ledger
from cdc_repair.state.engine import state_engine
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

    def __init__(self, env: Env) -> None:
        self.validator = IncrementalValidator(env.settings)
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


def open_kinds(env: Env) -> dict[tuple[str, int], str]:
    engine = state_engine(env.settings.state.dsn)
    try:
        return {(e.pair, int(e.key[0])): e.kind for e in ledger.open_entries(engine, due=False)}
    finally:
        engine.dispose()


def committed(env: Env) -> dict[int, int | None]:
    c = KafkaConsumer(bootstrap_servers=env.settings.kafka.bootstrap_servers,
                      group_id=env.settings.kafka.consumer.group_id, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(env.settings.kafka.topic.name, p)) for p in range(3)}
    finally:
        c.close()


def publish_all(env: Env, pub: Publisher) -> int:
    """Every row of both tables of both pairs as INSERT FlatMessages; returns the number of rows sent."""
    n = 0
    for db, table in ((env.author, "articles"), (env.online, "published_articles"), (env.author, "items"),
                      (env.online, "items")):
        rows = table_rows(env, f"{db}.{table}")
        pub.send_rows(db, table, rows)
        n += len(rows)
    return n


def test_stream_finds_exactly_the_planted_rows_and_dead_letters_bad_messages(env: Env) -> None:
    expected = {("articles", k): v for k, v in plant_articles(env, n=2000).items()}
    expected.update({("items", k): v for k, v in plant_items(env).items()})
    # keys deleted from both sides still arrive as events (DELETE): consistent, nothing to record
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    publish_all(env, pub)
    pub.send_rows(env.author, "articles", [{"id": 424242, "status": "2"}], type="DELETE")
    pub.send_raw(b"not json at all", partition=1)
    pub.send_raw(b'{"data": [{"title": "x"}], "database": "%s", "es": 1, "id": 1, "isDdl": false, '
                 b'"mysqlType": null, "old": null, "pkNames": ["id"], "sql": "", "sqlType": null, '
                 b'"table": "articles", "ts": 1, "type": "INSERT"}' % env.author.encode(), partition=2)
    pub.flush()
    pub.close()
    running = Running(env)
    try:
        wait_for(lambda: open_kinds(env) == expected and running.validator.health()["pending_keys"] == 0,
                 timeout=90, what="the planted divergences in the ledger")
        time.sleep(1.0)  # nothing else shows up later
        assert open_kinds(env) == expected
        health = running.validator.health()
        assert health["dead_letters"] == 2 and health["running"]
        last = health["last_dead_letter"]  # the status page's "Dead letters" card shows its reason
        assert last["reason"] and last["topic"] == env.settings.kafka.topic.name and last["at"] > 0
    finally:
        running.close()
    engine = state_engine(env.settings.state.dsn)
    entry = ledger.get_entry(engine, "articles", '["300"]')
    engine.dispose()
    assert entry is not None and entry.detected_by == "stream" and entry.columns == ("title",)
    assert entry.source_event["type"] == "INSERT" and entry.source_event["data"]["id"] == "300"
    assert entry.event_ts is not None and abs(entry.event_ts - time.time()) < 120
    # everything was durable, so every offset is committed (message counts vary by partition)
    assert all(o is not None and o > 0 for o in committed(env).values())
    dlq = KafkaConsumer(f"{env.settings.kafka.topic.name}.dlq", bootstrap_servers=env.settings.kafka.bootstrap_servers,
                        auto_offset_reset="earliest", consumer_timeout_ms=5000, group_id=None)
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dlq)
    dlq.close()
    assert len(reasons) == 2
    assert any("not a Canal FlatMessage" in r for r in reasons)
    assert any("key column(s) id" in r for r in reasons)


def test_mismatch_that_heals_before_rechecks_is_not_confirmed_and_newer_change_restarts(env: Env) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    from test_validate_support import ART_INSERT, article

    env.many(ART_INSERT.format(t=src), [article(1), article(2)])
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"recheck_delay_s": 1.0})})
    running = Running(Env(env.server, env.prefix, settings, env.raw))
    try:
        wait_for(lambda: bool(running.validator.health()["assigned"]), what="partitions assigned")
        pub.send_rows(env.author, "articles", table_rows(env, src))
        pub.flush()
        wait_for(lambda: running.validator.health()["keys_checked"] >= 2, what="first check")
        env.many(ART_INSERT.format(t=tgt), [article(1)])  # key 1 published late: heals before the re-checks end
        wait_for(lambda: running.validator.health()["pending_keys"] == 0, what="keys settled")
        assert open_kinds(env) == {("articles", 2): "missing_in_target"}
        env.sql(f"UPDATE {tgt} SET title='x' WHERE id=1")  # a later divergence of key 1, seen through an event
        pub.send_rows(env.online, "published_articles", table_rows(env, f"{tgt} WHERE id=1"))
        pub.flush()
        wait_for(lambda: ("articles", 1) in open_kinds(env), what="key 1 confirmed")
        # healing key 2 + its event resolves its entry
        env.many(ART_INSERT.format(t=tgt), [article(2)])
        pub.send_rows(env.online, "published_articles", table_rows(env, f"{tgt} WHERE id=2"))
        pub.flush()
        wait_for(lambda: ("articles", 2) not in open_kinds(env), what="key 2 resolved")
    finally:
        running.close()
        pub.close()
    engine = state_engine(env.settings.state.dsn)
    e2 = ledger.get_entry(engine, "articles", '["2"]')
    engine.dispose()
    assert e2 is not None and e2.status == "resolved"


def test_stopping_mid_batch_loses_no_key(env: Env) -> None:
    from test_validate_support import ART_INSERT, article

    src = f"{env.author}.articles"
    env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 51)])
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"settle_delay_s": 30.0})})
    env_slow = Env(env.server, env.prefix, settings, env.raw)
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    pub.send_rows(env.author, "articles", table_rows(env, src))
    pub.flush()
    first = Running(env_slow)
    wait_for(lambda: first.validator.health()["pending_keys"] == 50, what="50 keys read")
    first.close()  # stops before any key was due: nothing may be committed past them
    assert all(o is None or o == 0 for o in committed(env).values())
    assert open_kinds(env) == {}
    second = Running(env)  # normal settle delay: the same keys are re-delivered and checked
    try:
        wait_for(lambda: len(open_kinds(env)) == 50, what="all 50 keys confirmed after restart")
    finally:
        second.close()
    assert set(open_kinds(env).values()) == {"missing_in_target"}
    pub.close()


def test_killed_consumer_process_resumes_from_committed_offsets(env: Env, tmp_path: Any) -> None:
    """A SIGKILLed validator process commits nothing for unfinished keys; a new one checks them all."""
    import signal
    import subprocess
    import sys

    from test_validate_support import ART_INSERT, article

    src = f"{env.author}.articles"
    env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 31)])
    raw = dict(env.raw)
    raw["validator"] = {**raw["validator"], "settle_delay_s": 60.0}
    env_slow = Env(env.server, env.prefix, env.settings, raw)
    config = env_slow.write_config(tmp_path / "slow.yaml")
    code = ("import threading, sys\n"
            "from cdc_repair.config import load_settings\n"
            "from cdc_repair.validate.consumer import IncrementalValidator\n"
            f"IncrementalValidator(load_settings({str(config)!r})).run(threading.Event())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
        pub.send_rows(env.author, "articles", table_rows(env, src))
        pub.flush()
        pub.close()
        time.sleep(8)  # joined the group and read the messages (keys wait 60 s to settle)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert open_kinds(env) == {}
    time.sleep(7)  # the killed member's session expires (session_timeout_ms=6000)
    running = Running(env)
    try:
        wait_for(lambda: len(open_kinds(env)) == 30, timeout=60, what="all 30 keys after the kill")
    finally:
        running.close()
