"""`KafkaSink.settle`: bounding what is unacknowledged waits for the oldest records only, and never lets a
rejected one go by. Produce futures are stand-ins (a pure unit: the real producer is covered by the capture
fault tests)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import InvalidRecordError, KafkaTimeoutError

from cdc_repair.config import KafkaConfig
from cdc_repair.sink.kafka_producer import KafkaSink, ProduceFailed


class FakeFuture:
    """A produce future: acknowledged (or rejected) when `get` is first called if `ack_on_wait`."""

    def __init__(self, state: str = "waiting", *, ack_on_wait: bool = True) -> None:
        self.state = state
        self.ack_on_wait = ack_on_wait
        self.waited = 0

    @property
    def is_done(self) -> bool:
        return self.state != "waiting"

    def failed(self) -> bool:
        return self.state == "rejected"

    @property
    def exception(self) -> Exception | None:
        return InvalidRecordError("too big") if self.failed() else None

    def get(self, timeout: float | None = None) -> Any:
        self.waited += 1
        if self.state == "waiting":
            if not self.ack_on_wait:
                raise KafkaTimeoutError("no ack")
            self.state = "acked"
        if self.failed():
            raise InvalidRecordError("too big")
        return None


def _sink(futures: list[FakeFuture], size: int = 100) -> KafkaSink:
    sink = KafkaSink(KafkaConfig(bootstrap_servers=["127.0.0.1:1"]), log_every_s=0.01)
    for f in futures:
        sink._pending.append(f)
        sink._pending_sizes.append(size)
        sink.pending_bytes += size
    return sink


def test_settle_waits_for_the_oldest_records_only_down_to_the_bound() -> None:
    futures = [FakeFuture() for _ in range(10)]
    sink = _sink(futures)
    assert sink.settle(max_records=4, max_bytes=10_000)
    assert sink.pending == 4 and sink.pending_bytes == 400
    assert [f.waited for f in futures] == [1] * 6 + [0] * 4, "the newest records are not waited for"
    assert sink.settle(max_records=100, max_bytes=250)
    assert sink.pending == 2 and sink.pending_bytes == 200, "the byte bound counts too"


def test_settle_raises_on_a_rejected_record_and_the_sink_stays_failed() -> None:
    futures = [FakeFuture("acked"), FakeFuture("rejected"), FakeFuture("acked"), FakeFuture()]
    sink = _sink(futures)
    with pytest.raises(ProduceFailed, match="rejected"):
        sink.settle(max_records=0, max_bytes=0)
    assert sink.pending == 3, "the rejected record stays counted: the checkpoint cannot pass it"
    with pytest.raises(ProduceFailed):
        sink.confirm()


def test_settle_gives_up_on_a_broker_that_acknowledges_nothing() -> None:
    sink = _sink([FakeFuture(ack_on_wait=False)])
    sink.ack_deadline_s = 0.05
    stalls: list[str] = []
    sink.on_stall = stalls.append
    with pytest.raises(ProduceFailed, match="acknowledged none"):
        sink.settle(max_records=0, max_bytes=0)
    assert stalls and "not acknowledging 1 records" in stalls[0]
