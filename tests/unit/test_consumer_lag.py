"""Consumer lag from committed and end offsets (a fake consumer stands in for the broker's answers), and
"unknown" where the broker's end offsets are known to be wrong (kafka.end_offsets_exact: false)."""

from __future__ import annotations

from typing import Any

from cdc_repair import metrics
from cdc_repair.config import settings_from_mapping
from cdc_repair.sink.kafka_consumer import TP
from cdc_repair.validate.consumer import IncrementalValidator, consumer_lag

TOPIC = "rows"


def settings(exact: bool) -> Any:
    return settings_from_mapping({
        "servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}},
        "state": {"dsn": "mysql://u:p@127.0.0.1:1/state"},
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "topic": {"name": TOPIC}, "end_offsets_exact": exact},
        "pairs": [{"name": "articles", "kind": "publish", "source": {"server": "a", "table": "au.articles"},
                   "target": {"server": "a", "table": "on.published"}}],
    })


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
    v = IncrementalValidator(settings(True))
    v.assigned.update({(TOPIC, 0), (TOPIC, 1)})
    v._committed[(TOPIC, 0)] = 90  # committed by this validator
    v._consumer = FakeConsumer({(TOPIC, 0): 100, (TOPIC, 1): 50}, {(TOPIC, 1): 45}, {})  # type: ignore[assignment]
    v._refresh_lag()
    assert v.health()["consumer_lag_messages"] == 15
    assert gauge(0) == 10 and gauge(1) == 5
    v._on_revoked([(TOPIC, 1)])  # a partition handed to another validator: its series goes with it
    assert gauge(1) is None


def test_lag_is_unknown_where_end_offsets_are_wrong() -> None:
    v = IncrementalValidator(settings(False))
    v.assigned.add((TOPIC, 2))
    v._consumer = FakeConsumer({(TOPIC, 2): 100}, {(TOPIC, 2): 1}, {})  # type: ignore[assignment]
    v._refresh_lag()
    assert v.health()["consumer_lag_messages"] == "unknown"
    assert gauge(2) is None
