"""Consumer lag from committed and end offsets (a fake consumer stands in for the broker's answers), and
"unknown" where the broker's end offsets are known to be wrong (kafka.end_offsets_exact: false)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cdc_repair import metrics
from cdc_repair.config import settings_from_mapping
from cdc_repair.sink.kafka_consumer import TP, Record
from cdc_repair.validate.offsets import consumer_lag
from cdc_repair.validate.stream_kafka import StreamKafka

TOPIC = "rows"


def settings(exact: bool) -> Any:
    return settings_from_mapping({
        "servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}},
        "state": {"dsn": "mysql://u:p@127.0.0.1:1/state"},
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "topic": {"name": TOPIC}, "end_offsets_exact": exact},
        "pairs": [{"name": "articles", "kind": "publish", "source": {"server": "a", "table": "au.articles"},
                   "target": {"server": "a", "table": "on.published"}}],
    })


class NoDlq:
    topic = "dlq"

    def send(self, record: Record, reason: str) -> None:
        raise AssertionError("no dead letters here")

    def close(self) -> None:
        pass


def opened(s: Any, consumer: FakeConsumer) -> StreamKafka:
    kafka = StreamKafka(s.kafka, NoDlq())
    assert kafka.open(lambda: consumer, threading.Event())
    return kafka


class FakeConsumer:
    """The broker's answers: end offsets, the group's committed offsets, the partitions' first offsets."""

    def __init__(self, ends: dict[TP, int], committed: dict[TP, int | None], beginnings: dict[TP, int]) -> None:
        self.ends, self.committed_, self.beginnings = ends, committed, beginnings

    def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}

    def committed(self, tps: list[TP]) -> dict[TP, int | None]:
        return {tp: self.committed_.get(tp) for tp in tps}

    def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.beginnings[tp] for tp in tps}


def gauge(partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value("cdc_repair_validate_consumer_lag_messages",
                                             {"topic": TOPIC, "partition": str(partition)})


def test_lag_is_end_minus_committed_and_never_negative() -> None:
    lag = consumer_lag({(TOPIC, 0): 120, (TOPIC, 1): 5, (TOPIC, 2): 40},
                       {(TOPIC, 0): 100, (TOPIC, 1): 9, (TOPIC, 2): None}, {(TOPIC, 2): 10})
    assert lag == {(TOPIC, 0): 20, (TOPIC, 1): 0, (TOPIC, 2): 30}  # never committed: from the first offset


def test_validator_reports_lag_of_its_partitions_in_health_and_metrics() -> None:
    kafka = opened(settings(True), FakeConsumer({(TOPIC, 0): 100, (TOPIC, 1): 50}, {(TOPIC, 1): 45}, {}))
    kafka.refresh_lag([(TOPIC, 0), (TOPIC, 1)], {(TOPIC, 0): 90})  # partition 0 committed by this validator
    assert kafka.lag_total() == 15  # the validator's health()["consumer_lag_messages"]
    assert gauge(0) == 10 and gauge(1) == 5
    kafka.forget_lag([(TOPIC, 1)])  # a partition handed to another validator: its series goes with it
    assert gauge(1) is None and kafka.lag_total() == 10


def test_lag_is_unknown_where_end_offsets_are_wrong() -> None:
    kafka = opened(settings(False), FakeConsumer({(TOPIC, 2): 100}, {(TOPIC, 2): 1}, {}))
    kafka.refresh_lag([(TOPIC, 2)], {})
    assert kafka.lag_total() == "unknown"
    assert gauge(2) is None


def test_the_running_validator_reports_its_partitions_lag_and_drops_a_revoked_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `run()`: the group consumer's rebalance hooks and the loop's lag refresh reach health and metrics."""
    from sqlalchemy import create_engine

    from cdc_repair.validate import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "LAG_EVERY_S", 0.0)
    stop = threading.Event()
    seen: dict[str, Any] = {}

    class Group(FakeConsumer):
        def __init__(self, hooks: dict[str, Any]) -> None:
            super().__init__({(TOPIC, 3): 30}, {}, {(TOPIC, 3): 0})
            self.hooks, self.polls = hooks, 0

        def poll(self, timeout_s: float, max_records: int | None = None) -> list[Record]:
            self.polls += 1
            if self.polls == 1:
                self.hooks["on_assigned"]([(TOPIC, 3)])
            elif self.polls == 3:  # the lag was refreshed after the first two polls
                seen.update(health=v.health(), gauge=gauge(3), revoked=self.hooks["on_revoked"]([(TOPIC, 3)]))
                stop.set()
            return []

        def commit(self, offsets: dict[TP, int]) -> None:
            pass

        def close(self) -> None:
            pass

    v = consumer_module.IncrementalValidator(settings(True), engine=create_engine("sqlite://"),
                                             consumer_factory=lambda config, topics, **hooks: Group(hooks))
    assert v.health()["consumer_lag_messages"] is None  # not measured yet
    v.run(stop)
    assert seen["health"]["consumer_lag_messages"] == 30 and seen["health"]["assigned"] == [f"{TOPIC}:3"]
    assert seen["gauge"] == 30 and seen["revoked"] == {}
    assert gauge(3) is None and v.health()["assigned"] == []  # handed over: its series goes with it
