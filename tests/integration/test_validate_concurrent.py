"""No confirmed false positive while a writer publishes (source first, target 0–200 ms later).

The default run does 1,000 publishes; the slow variant 10,000 (`pytest -m slow`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from test_validate_support import ART_INSERT, Env, Publisher, PublishWriter, article, make_env

from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.state import ledger
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROWS = 3000


@pytest.fixture
def env(mariadb: MariaDBServer, broker: Broker) -> Iterator[Env]:
    topic = f"rows-{uuid.uuid4().hex[:8]}"
    ensure_topics([broker.bootstrap], [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    e = make_env(mariadb, bootstrap=broker.bootstrap, topic=topic,
                 extra={"validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.25, "rechecks": 2}})
    rows = [article(i) for i in range(1, ROWS + 1)]
    e.many(ART_INSERT.format(t=f"{e.author}.articles"), rows)
    e.many(ART_INSERT.format(t=f"{e.online}.published_articles"), rows)
    yield e
    e.drop()


def ledger_entries(env: Env) -> list[ledger.LedgerEntry]:
    engine = state_engine(env.settings.state.dsn)
    try:
        return ledger.open_entries(engine, due=False)
    finally:
        engine.dispose()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def full_scan_during_writes(env: Env, publishes: int) -> None:
    rate = 400.0
    duration = publishes / rate
    # stretch the scan over the writer's run so chunks really are read mid-publish
    fs = env.settings.validator.full_scan.model_copy(update={"chunk_rows": 100, "max_chunk_rows": 200,
                                                             "max_rows_per_s": max(500.0, ROWS / duration)})
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"full_scan": fs})})
    writer = PublishWriter(env, range(1, ROWS + 1), publishes, rate).start()
    scans = []
    while writer.thread.is_alive():
        scans.append(run_full_scan(settings, "articles"))
    writer.join()
    assert writer.done == publishes
    assert sum(s.differences for s in scans) == 0, [v for s in scans for p in s.pairs for v in p.confirmed][:5]
    assert ledger_entries(env) == []
    # the scans did meet in-flight publishes (dirty chunks, keys checked) and the re-checks cleared them
    assert sum(p.rows_checked for s in scans for p in s.pairs) > 0
    final = run_full_scan(settings, "articles")
    assert final.differences == 0 and final.pairs[0].dirty_chunks == 0


def stream_during_writes(env: Env, publishes: int) -> None:
    pub = Publisher(env.settings.kafka.bootstrap_servers[0], env.settings.kafka.topic.name)
    validator = IncrementalValidator(env.settings)
    stop = threading.Event()
    thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: bool(validator.health()["assigned"]), 60, "partitions assigned")
        writer = PublishWriter(env, range(1, ROWS + 1), publishes, 400.0, pub=pub).start()
        writer.join()
        pub.flush()
        wait_for(lambda: validator.health()["messages"] >= writer.sent_messages
                 and validator.health()["pending_keys"] == 0, 120, "every message checked")
        health = validator.health()
        assert health["keys_checked"] >= publishes and health["confirmed"] == 0, health
        assert ledger_entries(env) == []
    finally:
        stop.set()
        thread.join(30)
        pub.close()


def test_full_scan_no_false_positive_1000_publishes(env: Env) -> None:
    full_scan_during_writes(env, 1000)


def test_stream_no_false_positive_1000_publishes(env: Env) -> None:
    stream_during_writes(env, 1000)


@pytest.mark.slow
def test_full_scan_no_false_positive_10000_publishes(env: Env) -> None:
    full_scan_during_writes(env, 10000)


@pytest.mark.slow
def test_stream_no_false_positive_10000_publishes(env: Env) -> None:
    stream_during_writes(env, 10000)
