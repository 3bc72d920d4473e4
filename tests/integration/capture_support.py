"""Helpers for the capture tests: per-test config, an in-process tailer, reading a topic from the start."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, TopicPartition

from cdc_repair.config import Settings, load_settings
from cdc_repair.sink.flat_message import FlatMessage, parse_flat_message
from cdc_repair.source.tailer import Tailer
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_config(tmp_path: Path, mariadb: MariaDBServer, broker: Broker, db: str, *, topic: str | None = None,
                 name: str = "capture.yaml", **capture: Any) -> Path:
    """A config capturing `db.*` into its own topic, with its own state database."""
    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    dsn = mariadb.dsn().to_url()
    for server in raw["servers"].values():
        server["dsn"] = dsn
    raw["state"]["dsn"] = mariadb.dsn(f"st_{db}"[:60]).to_url()
    raw["kafka"]["bootstrap_servers"] = [broker.bootstrap]
    raw["kafka"]["topic"] = {"mode": "single", "name": topic or f"cap-{db}"}
    raw["capture"] = [{"server": "author", "server_id": random.randint(10_000, 4_000_000), "include": [f"{db}.*"],
                       "start": "current", "on_purged": "fail", **capture}]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@contextlib.contextmanager
def running_tailer(settings: Settings) -> Iterator[Tailer]:
    """A Tailer running in a thread until the block ends (then stopped, which must happen promptly)."""
    tailer = Tailer(settings, settings.capture[0])
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tailer.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-tailer", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not tailer.ready.is_set() and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    if errors:
        raise errors[0]
    assert tailer.ready.is_set(), f"tailer not ready: {tailer.health()}"
    try:
        yield tailer
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "tailer did not stop within 30 s"
    if errors:
        raise errors[0]


def read_messages(broker: Broker, topic: str, until: Callable[[list[FlatMessage]], bool],
                  timeout_s: float = 90, describe: Callable[[list[FlatMessage]], str] = lambda _: "") \
        -> list[tuple[int, int, FlatMessage]]:
    """Every message of `topic` from the start, as (partition, offset, message), read until `until` holds."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=32 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    out: list[tuple[int, int, FlatMessage]] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts: set[int] | None = None
        while not parts and time.monotonic() < deadline:  # a just-created topic may list no partitions yet
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        msgs: list[FlatMessage] = []
        while time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=300).items():
                for r in records:
                    m = parse_flat_message(r.value)
                    out.append((tp.partition, r.offset, m))
                    msgs.append(m)
            if until(msgs):
                return out
        raise AssertionError(f"timed out reading {topic}: {len(out)} messages so far; {describe(msgs)}")
    finally:
        consumer.close()


def rows_of(messages: list[FlatMessage], kind: str, table: str | None = None) -> list[dict[str, str | None]]:
    return [row for m in messages if m.type == kind and (table is None or m.table == table) for row in m.data or []]


def start_tail_process(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([sys.executable, "-m", "cdc_repair", "--config", str(config), "--log-format", "text",
                             "tail"], stdout=log, stderr=log, cwd=ROOT)


def settings_of(path: Path) -> Settings:
    return load_settings(path)


def caught_up(settings: Settings, engine: Any = None) -> bool:
    """`status` reads lag 0 for the first capture: its checkpoint is at the server's binlog end, or only
    transactions capture does not publish follow it (e.g. its own checkpoint write)."""
    from cdc_repair.source.status import capture_status

    return capture_status(settings, engine)["sources"][0]["lag_bytes"] == 0
