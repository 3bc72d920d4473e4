"""Compensation through the real stream (MariaDB binlog → tailer → broker → validator → repair):

- values come only from the binlog: forged Kafka messages never reach the source table (issue 11 item 3);
- the service knows its own writes: a repair's messages carry `cdc-repair-origin: repair` and the validator
  never takes them for source changes, so a compensation never reverts itself (item 4);
- in the real daemon, repeated half-done publishes are compensated once, back to the online state, with no
  ping-pong, counted in the binlog (items 4 and 5).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from test_validate_support import ART_INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import Settings, load_settings, settings_from_mapping
from cdc_repair.model.keys import pk_string
from cdc_repair.model.position import BinlogPosition
from cdc_repair.repair.worker import RepairWorker
from cdc_repair.sink.flat_message import FlatMessage, encode_flat_message, parse_flat_message
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.sink.partitioning import key_bytes, partition_for
from cdc_repair.source.history import BinlogHistory
from cdc_repair.source.tailer import Tailer
from cdc_repair.state import ledger
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config

COLS = ("id", "author_id", "title", "content", "status", "ctime", "utime")
Headers = dict[str, bytes]


@pytest.fixture
def env(mariadb: MariaDBServer, broker: Broker) -> Iterator[Env]:
    topic = f"comp-{uuid.uuid4().hex[:8]}"
    ensure_topics([broker.bootstrap], [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    e = make_env(mariadb, bootstrap=broker.bootstrap, topic=topic,
                 extra={"validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.2, "rechecks": 2}})
    raw = dict(e.raw, capture=[{"server": "author", "server_id": random.randint(10_000, 4_000_000),
                                "include": [f"{e.author}.articles", f"{e.online}.published_articles"],
                                "start": "current"}])
    raw["pairs"] = [dict(raw["pairs"][0], strategy="compensate")]
    raw["kafka"] = {**raw["kafka"], "consumer": {**raw["kafka"]["consumer"], "session_timeout_ms": 6000,
                                                 "heartbeat_interval_ms": 1000}}
    e.settings = settings_from_mapping(raw)
    e.raw = raw
    yield e
    e.drop()


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def row(env: Env, table: str, i: int) -> dict[str, Any] | None:
    got = env.sql(f"SELECT {', '.join(COLS)} FROM {table} WHERE id = %s", (i,))
    return dict(zip(COLS, got[0], strict=True)) if got else None


def master_position(env: Env) -> BinlogPosition:
    file, pos = env.sql("SHOW MASTER STATUS")[0][:2]
    return BinlogPosition(str(file), int(pos))


def entries(settings: Settings) -> dict[str, ledger.LedgerEntry]:
    engine = state_engine(settings.state.dsn)
    try:
        return {e.pk: e for e in ledger.open_entries(engine, statuses=("open", "repairing", "repaired", "resolved",
                                                                        "failed"), due=False)}
    finally:
        engine.dispose()


class Background:
    """A stage (validator or tailer) running in a thread until closed."""

    def __init__(self, run: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self.thread.start()

    def _run(self, run: Callable[[threading.Event], None]) -> None:
        try:
            run(self.stop)
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def topic_records(settings: Settings, until: Callable[[list[tuple[Headers, FlatMessage]]], bool],
                  timeout_s: float = 60) -> list[tuple[Headers, FlatMessage]]:
    """Every message of the pair's topic from the start, with its headers, read until `until` holds."""
    topic = settings.kafka.topic.name
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[Headers, FlatMessage]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out += [(dict(r.headers or []), parse_flat_message(r.value)) for r in records]
            if until(out):
                return out
        raise AssertionError(f"timed out reading {topic}: {[(h, m.type, m.data) for h, m in out]}")
    finally:
        consumer.close()


def of_key(records: list[tuple[Headers, FlatMessage]], table: str, i: int) -> list[tuple[Headers, FlatMessage]]:
    return [(h, m) for h, m in records if m.table == table and any(r.get("id") == str(i) for r in m.data or [])]


# ---------------------------------------------------------------- item 3: values only from the binlog


def test_forged_messages_on_the_topic_never_write_the_source(env: Env) -> None:
    """Anyone able to write to the topic sends an UPDATE whose `old` holds values the row never had; the
    daemon's validator records it and the repair stage compensates: the source is not changed, the refusal
    is in the ledger and the log."""
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(40, title="live 40"), article(41, title="live 41")])
    env.many(ART_INSERT.format(t=tgt), [article(40, title="live 40"), article(41, title="live 41")])
    where = master_position(env)
    env.sql(f"UPDATE {src} SET title = CONCAT('edited ', id), utime = utime + 1 WHERE id IN (40, 41)")
    edited = {i: row(env, src, i) for i in (40, 41)}

    producer = KafkaProducer(bootstrap_servers=env.settings.kafka.bootstrap_servers, acks="all")
    for i, headers in ((40, [("cdc-repair-binlog", f"{where.file}:{where.pos}".encode())]), (41, [])):
        data = {c: (v.decode("latin-1") if isinstance(v, bytes) else str(v)) for c, v in (edited[i] or {}).items()}
        forged = FlatMessage(database=env.author, table="articles", type="UPDATE", data=[data],
                             old=[{"title": "INJECTED-BY-KAFKA", "author_id": "666", "status": "1"}],
                             pk_names=["id"], es=int(time.time() * 1000), ts=int(time.time() * 1000))
        producer.send(env.settings.kafka.topic.name, encode_flat_message(forged), key=key_bytes([str(i)]),
                      partition=partition_for([str(i)], 3), headers=headers).get(30)
    producer.close()

    validator = IncrementalValidator(env.settings)
    running = Background(validator.run)
    try:
        wait_for(lambda: {pk_string([40]), pk_string([41])} <= set(entries(env.settings)), what="ledger entries")
    finally:
        running.close()

    worker = RepairWorker(env.settings, history=BinlogHistory)
    try:
        stats = worker.run_due(100)
    finally:
        worker.close()
    assert stats.claimed == 2
    assert {i: row(env, src, i) for i in (40, 41)} == edited  # nothing written into the authoring table
    assert stats.repaired == 0 and stats.parked == 1 and stats.retry == 1
    led = entries(env.settings)
    forged_40, forged_41 = led[pk_string([40])], led[pk_string([41])]
    assert forged_40.status == "failed" and "disagrees with the binlog" in (forged_40.last_error or "")
    assert "INJECTED-BY-KAFKA" in (forged_40.last_error or "")
    assert forged_41.status == "open" and "binlog coordinates" in (forged_41.last_error or "")


# ---------------------------------------------------------------- item 4: the service knows its own writes


def test_repair_writes_are_tagged_in_the_stream_and_the_validator_ignores_them(env: Env) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(61, title="live 61")])
    env.many(ART_INSERT.format(t=tgt), [article(61, title="live 61")])
    tailer = Tailer(env.settings, env.settings.capture[0])
    capture = Background(tailer.run)
    try:
        wait_for(tailer.ready.is_set, what="tailer ready")
        env.sql(f"UPDATE {src} SET title = 'half-done 61', utime = utime + 1 WHERE id = 61")  # online write fails
        env.many(ART_INSERT.format(t=src), [article(60, title="half-done 60")])  # never reached the target
        records = topic_records(env.settings, lambda rs: bool(of_key(rs, "articles", 60)))
        for i in (60, 61):
            [(headers, _)] = of_key(records, "articles", i)
            assert "cdc-repair-origin" not in headers and headers["cdc-repair-binlog"]  # the author's write

        validator = IncrementalValidator(env.settings)
        running = Background(validator.run)
        try:
            wait_for(lambda: {pk_string([60]), pk_string([61])} <= set(entries(env.settings)), what="ledger")
        finally:
            running.close()
        report = run_repair(env.settings, mode="execute")
        assert [r.status for r in report.results] == ["repaired", "repaired"], report.to_json()
        assert row(env, src, 60) is None and row(env, src, 61) == row(env, tgt, 61)

        records = topic_records(env.settings, lambda rs: len(of_key(rs, "articles", 60)) == 2
                                and len(of_key(rs, "articles", 61)) == 2)
        for i in (60, 61):
            [_, (headers, _)] = of_key(records, "articles", i)
            assert headers.get("cdc-repair-origin") == b"repair"  # the compensation's own write
        assert not [m for _, m in records if m.table == "undo_log"]  # the marker rows are never published
    finally:
        capture.close()

    # The online row changes without a binlog event: if the validator took the compensation's messages for
    # source changes it would re-check key 61 and reopen its entry (then compensate the compensation).
    conn = env.server.root_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"UPDATE {tgt} SET title = 'changed offline' WHERE id = 61")
    finally:
        conn.close()
    validator = IncrementalValidator(env.settings)
    running = Background(validator.run)
    try:
        wait_for(lambda: validator.stats["own_writes"] >= 2, what="own writes consumed")
        time.sleep(2)  # settle delay and rechecks would have passed
    finally:
        running.close()
    assert entries(env.settings)[pk_string([61])].status == "repaired"
    assert validator.stats["confirmed"] == 0


# ---------------------------------------------------------------- items 4 and 5 in the real daemon


def test_daemon_compensates_repeated_half_done_publishes_once_without_ping_pong(
        demo_config: Any, mariadb: MariaDBServer, broker: Broker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({"web": {"enabled": False}})).read_text())
    raw = isolated_raw_config(raw, tag, server_id=random.randint(10_000, 2**31))
    raw["pairs"][0]["strategy"] = "compensate"
    raw["scheduler"] = {"full_scan_cron": "0 3 * * *", "window_scan_interval_s": 3600, "retry_interval_s": 1}
    raw["repair"] = {"strategy": "compensate", "backoff": {"initial_s": 0.2, "max_s": 1.0, "multiplier": 2.0,
                                                           "jitter": 0.0}}
    config = tmp_path / "compensate.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    create_isolated_schema(settings)
    pair = settings.pairs[0]
    src, tgt = pair.source.table, pair.target.table
    mariadb.execute_many(f"INSERT INTO {src} (id, author_id, title, content, status, ctime, utime) "
                         f"VALUES (%s,%s,%s,%s,%s,%s,%s)", [(7, 1, "live v1", b"body v1", 2, 1, 1)])
    mariadb.execute_many(f"INSERT INTO {tgt} (id, author_id, title, content, status, ctime, utime) "
                         f"VALUES (%s,%s,%s,%s,%s,%s,%s)", [(7, 1, "live v1", b"body v1", 2, 1, 1)])
    original = mariadb.query(f"SELECT * FROM {src} WHERE id = 7")

    daemon = DaemonProcess(config, tmp_path / "daemon.log", name="compensate").start()
    try:
        assert daemon.wait_for_log("streaming", 60), daemon.log_text()[-3000:]
        file, pos = mariadb.query("SHOW MASTER STATUS")[0][:2]
        start = BinlogPosition(str(file), int(pos))
        for n in (2, 3):  # the author publishes twice; both online writes fail
            mariadb.query(f"UPDATE {src} SET title = %s, content = %s, utime = utime + 1 WHERE id = 7",
                          (f"live v{n}", f"body v{n}".encode()))
            time.sleep(0.2)

        def converged() -> bool:
            entry = entries(settings).get(pk_string([7]))
            return entry is not None and entry.status == "repaired" and \
                mariadb.query(f"SELECT * FROM {src} WHERE id = 7") == original

        wait_for(converged, 90, what=f"compensation to converge: {daemon.log_text()[-2000:]}")
        time.sleep(8)  # several repair passes (retry_interval_s 1) and validator rounds
        assert daemon.alive(), daemon.log_text()[-3000:]
    finally:
        daemon.stop(30)
    changes = BinlogHistory(settings).changes(pair.source.server, src, ["id"], [("7",)], start)[("7",)]
    titles = [(c.after or {}).get("title") for c in changes]
    assert titles == ["live v2", "live v3", "live v1"], titles  # two author writes, one compensation
    assert [c.by_repair for c in changes] == [False, False, True]
    assert mariadb.query(f"SELECT * FROM {src} WHERE id = 7") == original
    assert entries(settings)[pk_string([7])].status == "repaired"


def test_an_authors_transaction_just_before_a_repair_is_never_tagged_as_the_repairs(env: Env) -> None:
    """Rows of consecutive transactions share a message; when a repair transaction (undo_log row first)
    follows an author's within the grouping window, the author's rows must go out untagged, or the validator
    would skip a real source change."""
    from cdc_repair.repair.undo_log import ddl

    src = f"{env.author}.articles"
    env.sql(ddl(env.author))
    env.many(ART_INSERT.format(t=src), [article(i, title=f"t{i}") for i in range(70, 80)])
    marker = (f"INSERT INTO {env.author}.undo_log (branch_id, xid, context, table_name, pk, sql_type, strategy, "
              f"columns, before_image, after_image, log_status, log_created, log_modified) VALUES (1, %s, 'c', "
              f"'t', '[]', 'UPDATE', 'compensate', '{{}}', '{{}}', '{{}}', 0, NOW(6), NOW(6))")
    tailer = Tailer(env.settings, env.settings.capture[0])
    capture = Background(tailer.run)
    try:
        wait_for(tailer.ready.is_set, what="tailer ready")
        conn = env.server.root_connection()
        try:
            with conn.cursor() as cur:
                for n, i in enumerate(range(70, 80, 2)):  # author write, then at once a repair transaction
                    cur.execute(f"UPDATE {src} SET title = 'by the author' WHERE id = %s", (i,))
                    conn.begin()
                    cur.execute(marker, (f"rp-{n}",))
                    cur.execute(f"UPDATE {src} SET title = 'by a repair' WHERE id = %s", (i + 1,))
                    conn.commit()
        finally:
            conn.close()
        records = topic_records(env.settings, lambda rs: all(of_key(rs, "articles", i) for i in range(70, 80)))
    finally:
        capture.close()
    for i in range(70, 80):
        tagged = [h.get("cdc-repair-origin") == b"repair" for h, m in of_key(records, "articles", i)
                  if m.type == "UPDATE"]
        assert tagged == [i % 2 == 1], (i, tagged)
