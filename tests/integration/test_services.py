"""The embedded services start, accept connections, and are set up the way capture needs."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaConsumer, KafkaProducer

from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


def test_mariadb_accepts_logins_and_has_row_full_full_binlog(mariadb: MariaDBServer) -> None:
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id, @@port")
        assert cur.fetchone() == (1, "ROW", "FULL", "FULL", 11, mariadb.port)
    assert mariadb.port != 3306


def test_mariadb_restart_keeps_port_and_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = MariaDBServer(tmp_path / "db", server_id=12).start()
    try:
        server.root_connection().cursor().execute("CREATE DATABASE kept")
        port = server.port
        server.restart()
        assert server.port == port
        with server.root_connection().cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'kept'")
            assert cur.fetchone() == ("kept",)
    finally:
        server.stop()
    assert not server.is_running()


def test_broker_accepts_produce_and_group_consume(broker: Broker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    ensure_topics([broker.bootstrap], [topic], partitions=3, replication_factor=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(30)}
    for key, value in sent.items():
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=2000, max_poll_interval_ms=10000)
    got: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.update((r.key, r.value) for r in records)
    consumer.commit()
    consumer.close()
    assert got == sent
