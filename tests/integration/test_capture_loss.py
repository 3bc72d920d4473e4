"""Capture never skips a change the broker did not acknowledge (issue 10 items 1, 2, 8).

Real faults against a broker of the test's own (so it can be restarted or started late): the broker restarted
empty mid-stream (its idempotent-producer state gone), a record the broker rejects, the first start while the broker
is down. After each, every row change the server's binlog holds (decoded by `mariadb-binlog`, not by the tailer)
must be in Kafka, each key in binlog order; duplicates are allowed. Also: an idle tailer writes nothing and its
lag reads 0 when the state schema lives on the captured server.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from binlog_truth import await_in_kafka, binlog_changes, master_position
from capture_support import ROOT, caught_up, running_tailer, start_tail_process, unique, write_config

from cdc_repair import metrics
from cdc_repair.config import load_settings
from cdc_repair.source import dispatch
from cdc_repair.source.tailer import Tailer
from cdc_repair.state import checkpoints
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker this test may stop, restart (empty: memory storage) or start late; stopped at the end."""
    b = Broker(tmp_path / "broker", port=process.free_port())
    try:
        yield b
    finally:
        b.stop()


def _config(tmp_path: Path, mariadb: MariaDBServer, broker: Broker, db: str) -> Path:
    """Capture `db.*`; a short produce request timeout so a broker that lost our producer is given up on soon."""
    path = write_config(tmp_path, mariadb, broker, db)
    raw = yaml.safe_load(path.read_text())
    raw["kafka"]["producer"] = {"request_timeout_ms": 5000}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _create(mariadb: MariaDBServer, db: str, *tables: str) -> None:
    mariadb.query(f"CREATE DATABASE {db}")
    for table in tables:
        mariadb.query(f"CREATE TABLE {db}.{table} (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(200))")


def _wait(what: str, cond: Callable[[], bool], timeout_s: float = 90, describe: Callable[[], Any] = lambda: "") \
        -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {describe()}")


class Writer(threading.Thread):
    """Autocommit INSERTs of new keys and UPDATEs of old ones, `v` unique per change, until stopped."""

    def __init__(self, mariadb: MariaDBServer, db: str, table: str, pause_s: float, first_id: int = 1) -> None:
        super().__init__(name=f"writer-{table}", daemon=True)
        self.mariadb, self.db, self.table, self.pause_s = mariadb, db, table, pause_s
        self.next_id = first_id
        self.v = first_id * 1000
        self.halt = threading.Event()
        self.changes = 0

    def run(self) -> None:
        conn = self.mariadb.root_connection()
        rng = random.Random(7)
        with conn.cursor() as cur:
            while not self.halt.is_set():
                self.v += 1
                if self.next_id < 20 or rng.random() < 0.6:
                    cur.execute(f"INSERT INTO {self.db}.{self.table} VALUES (%s, %s, 'x')", (self.next_id, self.v))
                    self.next_id += 1
                else:
                    cur.execute(f"UPDATE {self.db}.{self.table} SET v = %s WHERE id = %s",
                                (self.v, rng.randrange(1, self.next_id)))
                self.changes += 1
                if self.pause_s:
                    time.sleep(self.pause_s)
        conn.close()

    def finish(self) -> None:
        self.halt.set()
        self.join(30)


def _checkpoint(config: Path) -> tuple[str, int] | None:
    engine = state_engine(load_settings(config).state.dsn)
    try:
        saved = checkpoints.load_checkpoint(engine, "author")
    finally:
        engine.dispose()
    return (saved.binlog_file, saved.binlog_pos) if saved else None


def _errors(kind: str) -> float:
    return metrics.ERRORS.labels("capture", kind)._value.get()  # type: ignore[no-any-return]


@pytest.mark.parametrize("pause_s", [0.002, 0.5], ids=["busy", "trickle"])
def test_broker_restarted_empty_mid_stream_loses_nothing(tmp_path: Path, mariadb: MariaDBServer, own_broker: Broker,
                                                         pause_s: float) -> None:
    """The restarted broker has no data and no producer state: the tailer must notice the records it no longer
    gets acknowledged, go not-ready, and re-publish from its last acknowledged boundary with a new producer."""
    db = unique("cap_bounce")
    _create(mariadb, db, "t")
    own_broker.start()
    config = _config(tmp_path, mariadb, own_broker, db)
    settings = load_settings(config)
    writer = Writer(mariadb, db, "t", pause_s)
    try:
        with running_tailer(settings) as tailer:
            writer.start()
            _wait("the first changes checkpointed",
                  lambda: tailer.health()["checkpoint"] is not None and writer.changes > 5)
            time.sleep(2)
            own_broker.stop()
            mark = master_position(mariadb)
            _wait("capture to report not ready while the broker is down", lambda: not tailer.health()["ready"],
                  describe=tailer.health)
            time.sleep(2)
            own_broker.start()  # same port, empty
            time.sleep(6)
            writer.finish()
            end = master_position(mariadb)
            expected = binlog_changes(mariadb, db, "t", mark, end)
            assert len(expected) >= 10
            await_in_kafka(own_broker, settings.kafka.topic.name, "t", expected, timeout_s=180)
            _wait("capture ready again", lambda: bool(tailer.health()["ready"]), describe=tailer.health)
    finally:
        writer.finish()

@pytest.mark.parametrize("bounded", [False, True], ids=["checkpoint_confirms", "memory_bound_settles"])
def test_rejected_record_holds_the_checkpoint_until_it_is_published(tmp_path: Path, mariadb: MariaDBServer,
                                                                     own_broker: Broker, bounded: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker-side rejection (here: the topic's JSON schema limits `pad`; on Apache Kafka e.g. a record over
    max.message.bytes) is retried, never skipped: the checkpoint stays before the rejected row while the stage
    is not ready, and once the broker accepts it (policy lifted) every change from that row on is published.
    `memory_bound_settles`: the bound on unacknowledged records is tiny, so the stream also waits for its oldest
    records (`settle`) all along, which must not let the rejection pass either."""
    if bounded:
        monkeypatch.setattr(dispatch, "CONFIRM_EVERY_RECORDS", 4)
    db = unique("cap_reject")
    _create(mariadb, db, "t")
    topic = f"cap-{db}"
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    pad_limit = {"type": "object", "properties": {"value": {"type": "object", "properties": {"data": {
        "type": ["array", "null"], "items": {"type": "object", "properties": {"pad": {"maxLength": 50}}}}}}}}
    (schemas / f"{topic}.json").write_text(json.dumps(pad_limit))
    own_broker.schema_dir = schemas
    own_broker.start()
    config = _config(tmp_path, mariadb, own_broker, db)
    settings = load_settings(config)
    rows = mariadb.root_connection()
    with running_tailer(settings) as tailer, rows.cursor() as cur:
        run_start = master_position(mariadb)
        for i in range(1, 21):
            cur.execute(f"INSERT INTO {db}.t VALUES (%s, %s, 'short')", (i, i))
        mark = master_position(mariadb)
        accepted = binlog_changes(mariadb, db, "t", run_start, mark)
        assert len(accepted) == 20
        await_in_kafka(own_broker, topic, "t", accepted, timeout_s=60)
        errors_before = _errors("ProduceFailed")
        cur.execute(f"INSERT INTO {db}.t VALUES (21, 21, %s)", ("y" * 80,))  # the broker rejects this one
        for i in range(22, 61):
            cur.execute(f"INSERT INTO {db}.t VALUES (%s, %s, 'short')", (i, i))
        cur.execute(f"UPDATE {db}.t SET v = 1001 WHERE id = 1")
        _wait("the rejection to be retried twice", lambda: _errors("ProduceFailed") >= errors_before + 2,
              describe=tailer.health)
        assert "InvalidRecord" in str(tailer.health()["last_error"]), tailer.health()
        saved = _checkpoint(config)
        assert saved is not None and saved <= mark, f"checkpoint {saved} passed the rejected row at {mark}"
        _wait("not ready while the record is rejected", lambda: not tailer.health()["ready"], describe=tailer.health)

        own_broker.stop()  # the operator lifts the policy (memory storage: the broker comes back empty)
        own_broker.schema_dir = None
        own_broker.start()
        end = master_position(mariadb)
        expected = binlog_changes(mariadb, db, "t", mark, end)
        assert ("INSERT", 21, 21) in expected and ("UPDATE", 1, 1001) in expected
        await_in_kafka(own_broker, topic, "t", expected, timeout_s=180)
        _wait("capture ready again", lambda: bool(tailer.health()["ready"]), describe=tailer.health)
    rows.close()


def test_first_start_before_the_broker_is_reachable_captures_from_the_start(tmp_path: Path, mariadb: MariaDBServer,
                                                                          own_broker: Broker) -> None:
    """`start: current` with no checkpoint: the position is fixed when `tail` starts, not when Kafka answers, so
    rows and half-done publishes written while the broker is still down are captured once it comes up."""
    db = unique("cap_late")
    _create(mariadb, db, "articles", "published")
    config = _config(tmp_path, mariadb, own_broker, db)  # own_broker not started yet: its port refuses
    log = tmp_path / "tail.log"
    proc = start_tail_process(config, log)
    try:
        _wait("the tailer to wait for Kafka", lambda: "unreachable" in log.read_text(), timeout_s=60,
              describe=lambda: log.read_text()[-2000:])
        mark = master_position(mariadb)
        conn = mariadb.root_connection()
        with conn.cursor() as cur:
            for i in range(1, 301):
                cur.execute(f"INSERT INTO {db}.articles VALUES (%s, %s, 'draft')", (i, i))
            for i in range(1, 6):  # half-done publishes: the author row changed, the online copy never written
                cur.execute(f"UPDATE {db}.articles SET v = %s WHERE id = %s", (1000 + i, i))
            for i in range(6, 11):  # and complete ones
                cur.execute(f"UPDATE {db}.articles SET v = %s WHERE id = %s", (1000 + i, i))
                cur.execute(f"INSERT INTO {db}.published VALUES (%s, %s, 'published')", (i, 1000 + i))
        conn.close()
        end = master_position(mariadb)
        own_broker.start()
        topic = load_settings(config).kafka.topic.name
        for table in ("articles", "published"):
            expected = binlog_changes(mariadb, db, table, mark, end)
            assert len(expected) == (310 if table == "articles" else 5)
            await_in_kafka(own_broker, topic, table, expected, timeout_s=180)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("include_state", [False, True], ids=["state-not-included", "state-matched-by-include"])
def test_idle_tailer_writes_no_checkpoint_and_status_reads_lag_zero(tmp_path: Path, mariadb: MariaDBServer,
                                                                    broker: Broker, include_state: bool) -> None:
    """The state schema on the captured server (every capture test's layout, and config/example.yaml's): its
    checkpoint writes are binlogged too. Idle must mean no writes, and `status --json` must read lag 0. When the
    include patterns also match the state schema, its rows are still never published."""
    db = unique("cap_idle")
    _create(mariadb, db, "t")
    state = f"st_{db}"[:60]
    include = [f"{db}.*", f"{state}.*"] if include_state else [f"{db}.*"]
    config = write_config(tmp_path, mariadb, broker, db, include=include)
    settings = load_settings(config)
    topic = settings.kafka.topic.name
    with running_tailer(settings) as tailer:
        mariadb.execute_many(f"INSERT INTO {db}.t VALUES (%s, %s, 'x')", [(i, i) for i in range(1, 51)])
        after_inserts = master_position(mariadb)
        await_in_kafka(broker, topic, "t", [("INSERT", i, i) for i in range(1, 51)], 60)
        _wait("the checkpoint past the inserts",
              lambda: (_checkpoint(config) or ("", 0)) >= after_inserts or caught_up(settings))
        time.sleep(3)  # settle: the last write of the busy phase is checkpointed by now
        before = _saves(tailer)
        writes_before = _state_writes(mariadb, state)
        time.sleep(5)  # idle: the tailer checks for a checkpoint every second
        assert _saves(tailer) == before, "the idle tailer saved checkpoints"
        assert _state_writes(mariadb, state) == writes_before
        doc = _status_json(config)
        [source] = doc["checkpoints"]
        assert source["lag_seconds"] == 0 and source["lag_bytes"] == 0, source
        # not idle any more: a new change is captured and checkpointed again
        mariadb.query(f"INSERT INTO {db}.t VALUES (51, 51, 'x')")
        messages = await_in_kafka(broker, topic, "t", [("INSERT", 51, 51)], 60)
        _wait("a new checkpoint after the insert", lambda: _saves(tailer) > before)
    assert {m.database for _, _, m in messages} == {db}


def _saves(tailer: Tailer) -> float:
    return metrics.CHECKPOINTS.labels(tailer.source)._value.get()  # type: ignore[no-any-return]


def _state_writes(mariadb: MariaDBServer, state_db: str) -> Any:
    return mariadb.query(f"SELECT binlog_file, binlog_pos, updated_at FROM {state_db}.checkpoint")


def _status_json(config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(config), "--json", "status"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]
