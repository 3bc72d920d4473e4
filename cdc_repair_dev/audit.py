"""Read a whole topic from the beginning, for audits: the soak test's "no row change missing from Kafka".

Not used by the service itself. It assigns every partition (no consumer group, nothing committed) and reads
until no record arrived for `idle_s`: the embedded broker's reported end offsets are unreliable (tansu), so
"the end" is never taken from them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from kafka import KafkaConsumer, TopicPartition

from cdc_repair.sink.flat_message import FlatMessage, parse_flat_message


def read_topic(bootstrap: Sequence[str], topic: str, *, idle_s: float = 5.0,
               max_s: float = 300.0) -> Iterator[FlatMessage]:
    consumer = KafkaConsumer(bootstrap_servers=list(bootstrap), enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=int(idle_s * 1000), max_poll_records=5000,
                             fetch_max_wait_ms=200)
    try:
        deadline = time.monotonic() + 30
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.5)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        stop_at = time.monotonic() + max_s
        for record in consumer:  # ends after idle_s without a record (consumer_timeout_ms)
            yield parse_flat_message(record.value)
            if time.monotonic() > stop_at:
                break
    finally:
        consumer.close()
