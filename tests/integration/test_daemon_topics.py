"""`cdc-repair run` creates its topics (data and dead-letter) with `kafka.partitions` before any consumer
subscribes, and says in one line when an existing topic has another partition count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient

from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.harness import DaemonProcess, isolated_raw_config


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.stop(20)


def partitions(broker: Broker, topic: str) -> int | None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        found = [t for t in admin.describe_topics([topic]) if t.get("error_code", 0) == 0]
        return len(found[0]["partitions"]) if found else None
    finally:
        admin.close()


def config(demo_config: Any, tmp_path: Path, tag: str, partitions: int) -> Path:
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4545)
    raw.update({"capture": [], "web": {"enabled": False}})
    raw["kafka"]["partitions"] = partitions
    path = tmp_path / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_run_creates_data_and_dead_letter_topics_with_the_configured_partitions(
        demo_config: Any, tmp_path: Path, broker: Broker, daemons: list[DaemonProcess]) -> None:
    tag = uuid.uuid4().hex[:8]
    d = DaemonProcess(config(demo_config, tmp_path, tag, 3), tmp_path / "run.log").start()
    daemons.append(d)
    assert d.wait_for_log("validate: assigned", 90), d.log_text()[-3000:]
    assert partitions(broker, f"rows-{tag}") == 3
    assert partitions(broker, f"dlq-{tag}") == 3


def test_an_existing_topic_with_another_partition_count_is_reported_in_one_line(
        demo_config: Any, tmp_path: Path, broker: Broker, daemons: list[DaemonProcess]) -> None:
    tag = uuid.uuid4().hex[:8]
    ensure_topics([broker.bootstrap], [f"rows-{tag}"], partitions=2, replication_factor=1)
    d = DaemonProcess(config(demo_config, tmp_path, tag, 3), tmp_path / "run.log").start()
    daemons.append(d)
    assert d.wait_for_log("validate: assigned", 90), d.log_text()[-3000:]
    lines = [r["msg"] for r in d.log_records() if f"rows-{tag}" in r.get("msg", "") and "partition" in r["msg"]
             and r.get("level") == "WARNING"]
    assert len(lines) == 1, lines
    assert "has 2 partitions" in lines[0] and "kafka.partitions is 3" in lines[0]
