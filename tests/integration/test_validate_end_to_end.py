"""binlog → capture Tailer → Kafka → IncrementalValidator → ledger, with the real capture stage.

Marked slow: it depends on the capture stage too (run with `pytest -m slow`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from test_validate_support import ART_INSERT, Env, article, make_env

from cdc_repair.config import settings_from_mapping
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.source.tailer import Tailer
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
                 extra={"validator": {"settle_delay_s": 0.5, "recheck_delay_s": 0.3, "rechecks": 2}})
    e.raw["capture"] = [{"server": "author", "server_id": 5000 + int(uuid.uuid4().int % 1000),
                         "include": [f"{e.author}.*", f"{e.online}.*"], "start": "current"}]
    e.settings = settings_from_mapping(e.raw)
    yield e
    e.drop()


@pytest.mark.slow
def test_binlog_to_ledger_end_to_end(env: Env) -> None:
    stop = threading.Event()
    tailer = Tailer(env.settings, env.settings.capture[0])
    validator = IncrementalValidator(env.settings)
    threads = [threading.Thread(target=tailer.run, args=(stop,), daemon=True),
               threading.Thread(target=validator.run, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    try:
        assert tailer.ready.wait(60)
        deadline = time.monotonic() + 60
        while not validator.health()["assigned"] and time.monotonic() < deadline:
            time.sleep(0.1)
        src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
        env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 101)])
        env.many(ART_INSERT.format(t=tgt), [article(i) for i in range(1, 101) if i not in (7, 8)])
        env.sql(f"UPDATE {tgt} SET title='stale' WHERE id=20")
        env.sql(f"DELETE FROM {src} WHERE id=30")  # the online copy is now an orphan
        env.sql(f"UPDATE {src} SET status=3 WHERE id=40")  # withdrawn, online still published
        env.sql(f"UPDATE {tgt} SET status=3 WHERE id=40")  # ... and then withdrawn online too: consistent
        expected = {7: "missing_in_target", 8: "missing_in_target", 20: "different", 30: "extra_in_target"}

        def entries() -> dict[int, str]:
            engine = state_engine(env.settings.state.dsn)
            try:
                return {int(e.key[0]): e.kind for e in ledger.open_entries(engine, due=False)}
            finally:
                engine.dispose()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (entries() != expected or validator.health()["pending_keys"]):
            time.sleep(0.2)
        assert entries() == expected
        engine = state_engine(env.settings.state.dsn)
        e30 = ledger.get_entry(engine, "articles", '["30"]')
        engine.dispose()
        assert e30 is not None and e30.source_event["type"] == "DELETE"  # the before-image, for compensation
        assert e30.source_event["data"]["id"] == "30"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
