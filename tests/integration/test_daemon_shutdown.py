"""Shutdown order and bound: a down broker does not hold the daemon past its bound, and the leader lock is
released only after the leader stages have stopped (docs/operations.md promises both)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair.config import settings_from_mapping
from cdc_repair.runtime.daemon import Daemon
from cdc_repair.runtime.leader import MySQLNamedLock
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.runtime.supervisor import StageSpec
from cdc_repair.stage import Stage
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, isolated_raw_config


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.stop(20)


def test_sigterm_with_the_broker_down_stops_cleanly_within_the_bound(demo_config: Any, tmp_path: Path,
                                                                      daemons: list[DaemonProcess]) -> None:
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4343)
    raw.update({"capture": [], "web": {"enabled": False}})
    raw["kafka"]["bootstrap_servers"] = [f"127.0.0.1:{process.free_port()}"]  # nothing listens there
    config = tmp_path / "down.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    d = DaemonProcess(config, tmp_path / "down.log", name="down", args=["--shutdown-timeout", "8"]).start()
    daemons.append(d)
    assert d.wait_for_log("starting stage validate", 60), d.log_text()[-3000:]
    time.sleep(3)  # the validate stage is now trying to reach the broker
    began = time.monotonic()
    d.terminate()
    code = d.wait(30)
    took = time.monotonic() - began
    print(f"SIGTERM to exit with the broker down: {took:.1f} s")
    assert code == 0, (code, took, d.log_text()[-3000:])
    assert "daemon stopped (clean)" in d.log_text()


class _LeaderStage(Stage):
    """A leader-only stage whose stop takes a while (as a tailer flushing and saving its checkpoint); when it
    finishes it records whether the leader lock is still held, as an operator would see it on the server."""

    def __init__(self, mariadb: MariaDBServer, lock_name: str, seen: list[bool], running: threading.Event) -> None:
        self.mariadb = mariadb
        self.lock_name = lock_name
        self.seen = seen
        self.running = running

    def run(self, stop: threading.Event) -> None:
        self.running.set()
        stop.wait()
        time.sleep(1.5)  # flushing
        conn = self.mariadb.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT IS_USED_LOCK(%s)", (self.lock_name,))
                row = cur.fetchone()
        finally:
            conn.close()
        self.seen.append(row is not None and row[0] is not None)


def test_leader_lock_is_released_after_the_leader_stages_stopped(mariadb: MariaDBServer) -> None:
    lock_name = f"cdc-lock-{uuid.uuid4().hex[:8]}"
    dsn = mariadb.dsn().to_url()
    settings = settings_from_mapping({
        "servers": {"author": {"dsn": dsn}}, "state": {"dsn": dsn},
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
        "pairs": [{"name": "p", "source": {"server": "author", "table": "a.t"},
                   "target": {"server": "author", "table": "b.t"}}],
        "ha": {"lock_name": lock_name, "lock_retry_s": 0.2}})
    seen: list[bool] = []
    running = threading.Event()
    spec = StageSpec("capture", lambda: _LeaderStage(mariadb, lock_name, seen, running), leader_only=True)
    daemon = Daemon(LiveSettings(settings, None), [spec], MySQLNamedLock(settings.state.dsn, lock_name),
                    shutdown_timeout_s=10)
    daemon.start()
    try:
        assert running.wait(30), "never elected"
    finally:
        assert daemon.stop()
    assert seen == [True]  # still held while the leader stage finished
    assert mariadb.query("SELECT IS_USED_LOCK(%s)", (lock_name,)) == [(None,)]  # released once stopped


def test_validator_stops_promptly_when_the_broker_died_with_offsets_to_commit(mariadb: MariaDBServer,
                                                                               tmp_path: Path) -> None:
    """Keys checked but not committed yet, then the broker dies: the validator's last commit and its close
    cannot reach anyone, and must not hold the stop for the client's 30 s request timeouts."""
    from test_validate_support import ART_INSERT, Publisher, article, make_env, table_rows

    from cdc_repair.sink.kafka_admin import ensure_topics
    from cdc_repair.validate.consumer import IncrementalValidator
    from cdc_repair_dev.devservices.broker import Broker

    own = Broker(tmp_path / "broker").start()
    try:
        ensure_topics([own.bootstrap], ["rows", "rows.dlq"], partitions=3, replication_factor=1)
        env = make_env(mariadb, bootstrap=own.bootstrap, topic="rows")
        src = f"{env.author}.articles"
        env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 30)])
        pub = Publisher(own.bootstrap, "rows")
        pub.send_rows(env.author, "articles", table_rows(env, src))
        pub.flush()
        pub.close()
        validator = IncrementalValidator(env.settings, commit_interval_s=3600.0)
        stop = threading.Event()
        thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (validator.stats["rows"] == 29 and not validator.items):
            time.sleep(0.1)
        assert validator.stats["rows"] == 29 and not validator.items
        own.stop()
        time.sleep(1)
        stop.set()
        thread.join(15)  # well within the daemon's default 20 s bound
        assert not thread.is_alive(), "the validator did not stop with the broker down"
        env.drop()
    finally:
        own.stop()
