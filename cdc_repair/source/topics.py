"""Topic names and partition counts for capture: topics are created (with our partition count) once per producer.

A new producer checks them again: a broker that lost its data (or another cluster behind the same address)
must get them created with our partition count before anything is sent.
"""

from __future__ import annotations

from cdc_repair.config import KafkaConfig
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.sink.partitioning import topic_for


class Topics:
    def __init__(self, kafka: KafkaConfig) -> None:
        self.kafka = kafka
        self._sink: KafkaSink | None = None
        self._ready: set[str] = set()
        self._partitions: dict[str, int] = {}
        self._names: dict[tuple[str, str], str] = {}

    def use(self, sink: KafkaSink) -> None:
        """A new producer: forget what the previous one checked (and check the single topic now)."""
        self._sink = sink
        self._ready.clear()
        self._partitions.clear()
        if self.kafka.topic.mode == "single":
            self.ensure(self.kafka.topic.name)

    def name(self, database: str, table: str) -> str:
        name = self._names.get((database, table))
        if name is None:
            t = self.kafka.topic
            name = self._names[(database, table)] = topic_for(t.mode, t.name, t.prefix, database, table)
        return name

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            self.ensure(topic)
            n = self._partitions[topic]
        return n

    def ensure(self, topic: str) -> None:
        sink = self._sink
        assert sink is not None, "use() first"
        if topic not in self._ready:
            sink.ensure_topics([topic], self.kafka.partitions, self.kafka.replication_factor)
            self._ready.add(topic)
        self._partitions[topic] = sink.partitions(topic)

    def known(self, topic: str) -> bool:
        return topic in self._partitions
