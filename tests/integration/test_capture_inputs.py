"""Capture of inputs the stream cannot carry as-is, against the real MariaDB and broker.

* a 16 MiB LONGBLOB row among normal rows (over kafka.producer.max_request_size): every row reaches Kafka, the
  big value is replaced by the documented marker, the validator reads the real row from the database and the
  ledger row stays bounded;
* binlog_format switched to STATEMENT mid-run (per session and globally): detected, not ready, full validation
  requested, capture continues;
* binlog_row_image=MINIMAL mid-run and back to FULL: a clear error naming the way forward, and that way
  (`on_partial_image: skip_and_full_validate`) lets capture continue with a full validation requested.

After each fault, what reached Kafka is also checked against the server's binlog decoded by `mariadb-binlog`
(binlog_truth), not against the workload's list or the tailer's bookkeeping: every change logged as rows is in
Kafka (duplicates allowed, each key in binlog order; the big row with its marker and its other values right); DML
logged as statements and the row logged with a MINIMAL image are not in Kafka as rows, so the requested full
validation is what brings the target to them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from binlog_truth import (
    Change,
    RowImage,
    await_in_kafka,
    binlog_changes,
    binlog_rows,
    binlog_statements,
    kafka_changes,
    master_position,
)
from capture_support import read_messages, running_tailer, settings_of, unique, write_config
from kafka import KafkaConsumer, TopicPartition
from test_validate_support import ITEM_INSERT, Env, make_env

from cdc_repair import metrics
from cdc_repair.config import settings_from_mapping
from cdc_repair.errors import SchemaDriftError
from cdc_repair.model.oversized import LEDGER_IMAGE_MAX_BYTES, OVERSIZED_MARKER
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.source.tailer import Tailer
from cdc_repair.state import checkpoints, ledger, runs
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

MiB = 1024 * 1024


def _raw_messages(broker: Broker, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                  timeout_s: float = 120) -> list[dict[str, Any]]:
    """Every message of `topic` as raw JSON objects (extra keys kept), read until `until` holds."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=64 * MiB,
                             fetch_max_bytes=128 * MiB)
    out: list[dict[str, Any]] = []
    try:
        parts = None
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            time.sleep(0.2)
        assert parts, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(orjson.loads(r.value) for r in records)
            if until(out):
                return out
        raise AssertionError(f"timed out reading {topic}: {len(out)} messages")
    finally:
        consumer.close()


def _changes(messages: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(m["type"], str(r["id"]), str(r["v"])) for m in messages if not m["isDdl"] for r in m["data"] or []}


def _counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def _bulk(mariadb: MariaDBServer, table: str, first: int, extra: str = "") -> list[Change]:
    """20 rows (id = v = first..first+19) in one multi-row INSERT: changes only the binlog check looks for."""
    ids = range(first, first + 20)
    mariadb.query(f"INSERT INTO {table} VALUES " + ", ".join(f"({i}, {i}{extra})" for i in ids))
    return [("INSERT", i, i) for i in ids]


# ---------------------------------------------------------------- item 3: one oversized row


def test_a_16_mib_row_is_published_with_a_marker_and_stalls_no_other_row(tmp_path: Path, mariadb: MariaDBServer,
                                                                         broker: Broker) -> None:
    db = unique("cap_big")
    mariadb.query(f"CREATE DATABASE {db}")
    mariadb.query(f"CREATE TABLE {db}.b (id INT PRIMARY KEY, v INT NOT NULL, body LONGBLOB)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))  # default kafka.producer limits
    before = _counter(metrics.CAPTURE_OVERSIZED, f"{db}.b")
    start = master_position(mariadb)
    big = f"REPEAT(UNHEX('00FF5C22'), {16 * MiB // 4})"  # NUL, 0xFF, backslash, quote: ~3 bytes each as JSON
    with running_tailer(settings) as tailer:
        for i in range(1, 4):
            mariadb.query(f"INSERT INTO {db}.b VALUES ({i}, {i}, 'small')")
        bulk = _bulk(mariadb, f"{db}.b", 100, ", 'bulk'")
        mariadb.query(f"INSERT INTO {db}.b VALUES (4, 4, {big})")
        bulk += _bulk(mariadb, f"{db}.b", 200, ", 'bulk'")
        for i in range(5, 8):
            mariadb.query(f"INSERT INTO {db}.b VALUES ({i}, {i}, 'small')")
        mariadb.query(f"UPDATE {db}.b SET v = 40 WHERE id = 4")  # both images hold the 16 MiB value
        mariadb.query(f"UPDATE {db}.b SET v = 10 WHERE id = 1")
        mariadb.query(f"DELETE FROM {db}.b WHERE id = 4")
        mariadb.query(f"INSERT INTO {db}.b VALUES (8, 8, 'after')")
        want = {("INSERT", str(i), str(i)) for i in range(1, 9)} | {
            ("UPDATE", "4", "40"), ("UPDATE", "1", "10"), ("DELETE", "4", "40")}
        msgs = _raw_messages(broker, settings.kafka.topic.name, lambda ms: want <= _changes(ms))
        health = tailer.health()
        # the server's own record: every row change of the run in Kafka, the big one with its marker
        truth = binlog_rows(mariadb, db, "b", start, master_position(mariadb))
        assert all(r.full(3) for r in truth)
        assert {(k, str(i), str(v)) for k, i, v in (r.change() for r in truth)} == want | {
            (k, str(i), str(v)) for k, i, v in bulk}
        in_kafka = await_in_kafka(broker, settings.kafka.topic.name, "b", [r.change() for r in truth])
    _bodies_as_in_binlog(truth, in_kafka)
    assert health["ready"] is True and health["last_error"] is None, health
    limit = settings.kafka.producer.max_request_size
    big_msgs = [m for m in msgs if any(r["id"] == "4" for r in m["data"] or [])]
    assert sorted(m["type"] for m in big_msgs) == ["DELETE", "INSERT", "UPDATE"]
    for m in big_msgs:
        assert len(orjson.dumps(m)) < limit
        assert m["data"] == [{"id": "4", "v": m["data"][0]["v"], "body": OVERSIZED_MARKER}]
        assert m["oversized"] == ["body"]
        if m["type"] == "UPDATE":
            assert m["old"] == [{"v": "4"}]  # the unchanged body is not in `old`
    small = [r for m in msgs if m["type"] == "INSERT" for r in m["data"] if r["id"] != "4"]
    assert {r["body"] for r in small} == {"small", "after", "bulk"}
    assert all("oversized" not in m for m in msgs if m not in big_msgs)
    assert _counter(metrics.CAPTURE_OVERSIZED, f"{db}.b") == before + 3


def _bodies_as_in_binlog(truth: list[RowImage], in_kafka: list[tuple[int, int, FlatMessage]]) -> None:
    """Each binlog row's `body` (column 3) is in Kafka with that change: the marker for the 16 MiB value, the value
    itself otherwise (key and `v` are the change's identity, so they are right too)."""
    bodies: dict[Change, set[str | None]] = {}
    for _, _, m in in_kafka:
        for row in m.data or []:
            bodies.setdefault((m.type, int(row["id"] or 0), int(row["v"] or 0)), set()).add(row["body"])
    for r in truth:
        body = r.image[3]
        assert (OVERSIZED_MARKER if len(body) > MiB else body) in bodies[r.change()], (r.change(), body[:40])


@pytest.fixture
def item_env(mariadb: MariaDBServer, broker: Broker) -> Iterator[Env]:
    topic = f"rows-{uuid.uuid4().hex[:8]}"
    ensure_topics([broker.bootstrap], [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    e = make_env(mariadb, bootstrap=broker.bootstrap, topic=topic,
                 extra={"validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.3, "rechecks": 1}})
    yield e
    e.drop()


@pytest.mark.parametrize("request_limit", [None, 30 * MiB], ids=["default-limit", "raised-limit"])
def test_validator_checks_an_oversized_row_from_the_database_and_bounds_its_ledger_row(
        item_env: Env, request_limit: int | None) -> None:
    env = item_env
    if request_limit:  # the stream then carries the whole row; the ledger must still not store it whole
        env.raw["kafka"] = {**env.raw["kafka"], "producer": {"max_request_size": request_limit}}
    env.raw["capture"] = [{"server": "author", "server_id": 6000 + int(uuid.uuid4().int % 1000),
                           "include": [f"{env.author}.items"], "start": "current"}]
    env.settings = settings_from_mapping(env.raw)
    src, tgt = f"{env.author}.items", f"{env.online}.items"
    # 12 MiB of bytes 0x80-0xFF: 2 bytes each in the FlatMessage, 6 in a JSON column (\u00XX)
    size = 16 * MiB if request_limit is None else 12 * MiB
    big = f"REPEAT(UNHEX('80C1FFEE'), {size // 4})"
    stop = threading.Event()
    tailer = Tailer(env.settings, env.settings.capture[0])
    validator = IncrementalValidator(env.settings)
    threads = [threading.Thread(target=tailer.run, args=(stop,), daemon=True),
               threading.Thread(target=validator.run, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    engine = state_engine(env.settings.state.dsn)
    try:
        assert tailer.ready.wait(60)
        deadline = time.monotonic() + 60
        while not validator.health()["assigned"] and time.monotonic() < deadline:
            time.sleep(0.1)
        env.many(ITEM_INSERT.format(t=tgt), [(i, f"n{i}", None, b"b", 1.0, 1) for i in range(1, 11) if i != 9])
        env.sql(f"INSERT INTO {tgt} VALUES (21, 'big', NULL, CONCAT({big}, 'x'), 0, 1)")  # differs in 1 byte
        env.sql(f"INSERT INTO {tgt} VALUES (22, 'big', NULL, {big}, 0, 1)")  # equal
        with contextlib.closing(env.server.root_connection()) as conn, conn.cursor() as cur:
            conn.autocommit(False)  # the big rows share one transaction (one event batch) with normal rows
            cur.executemany(ITEM_INSERT.format(t=src), [(i, f"n{i}", None, b"b", 1.0, 1) for i in range(1, 11)])
            cur.execute(f"INSERT INTO {src} VALUES (21, 'big', NULL, {big}, 0, 1), (22, 'big', NULL, {big}, 0, 1)")
            cur.execute(f"UPDATE {src} SET price = 2.0 WHERE id = 10")
            conn.commit()
        expected = {9: "missing_in_target", 10: "different", 21: "different"}

        def entries() -> dict[int, str]:
            return {int(e.key[0]): e.kind for e in ledger.open_entries(engine, due=False) if e.pair == "items"}

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (entries() != expected or validator.health()["pending_keys"]):
            time.sleep(0.3)
        assert entries() == expected, (validator.health(), tailer.health())
        assert validator.health()["last_error"] is None
        assert tailer.health()["last_error"] is None
        size_in_ledger = env.sql(f"SELECT LENGTH(source_event) FROM {env.prefix}_state.inconsistency "
                                 f"WHERE pair = 'items' AND pk = %s", ('["21"]',))[0][0]
        assert size_in_ledger <= LEDGER_IMAGE_MAX_BYTES + 4096
        e21 = ledger.get_entry(engine, "items", '["21"]')
        assert e21 is not None and e21.source_event["data"]["body"] == OVERSIZED_MARKER
        assert e21.source_event["data"]["id"] == "21" and e21.source_event["oversized"] == ["body"]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        engine.dispose()


# ---------------------------------------------------------------- items 4 and 5: statement DML, partial images


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def _global(mariadb: MariaDBServer, name: str, value: str) -> Iterator[None]:
    old = mariadb.query(f"SELECT @@GLOBAL.{name}")[0][0]
    mariadb.query(f"SET GLOBAL {name} = '{value}'")
    try:
        yield
    finally:
        mariadb.query(f"SET GLOBAL {name} = {old}" if isinstance(old, int) else f"SET GLOBAL {name} = '{old}'")


def _tailer_thread(settings: Any) -> tuple[Tailer, threading.Thread, list[BaseException]]:
    """A tailer running in a thread of its own; what it raised (it stops at an uncapturable event) in the list."""
    tailer = Tailer(settings, settings.capture[0])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tailer.run(threading.Event())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return tailer, thread, errors


def _open_requests(engine: Any) -> list[dict[str, Any]]:
    return runs.pending_full_scan_requests(engine)


def _stream_rows(broker: Broker, topic: str, want: set[tuple[str, str, str]]) -> list[FlatMessage]:
    def seen(ms: list[FlatMessage]) -> set[tuple[str, str, str]]:
        return {(m.type, str(r["id"]), str(r["v"])) for m in ms if not m.is_ddl for r in m.data or []}

    return [m for _, _, m in read_messages(broker, topic, lambda ms: want <= seen(ms),
                                           describe=lambda ms: f"missing {want - seen(ms)}")]


def _statement_rows_only_by_validation(mariadb: MariaDBServer, broker: Broker, topic: str, db: str, table: str,
                                       start: tuple[str, int], *, rows: set[Change], statements: list[str],
                                       absent: set[Change]) -> None:
    """Against the server's binlog: every change logged as rows is in Kafka; the DML logged as statements (no row
    image to publish) is there as statements only, and none of its rows is in Kafka, so only the requested full
    validation can bring the target to them."""
    end = master_position(mariadb)
    changes = binlog_changes(mariadb, db, table, start, end, columns=2)
    assert set(changes) == rows, sorted(set(changes) ^ rows)
    logged = binlog_statements(mariadb, db, table, start, end)
    assert len(logged) == len(statements), logged
    assert all(any(part in line for line in logged) for part in statements), logged
    in_kafka = set(kafka_changes(await_in_kafka(broker, topic, table, changes), table))
    assert not absent & in_kafka


def test_statement_format_dml_is_detected_not_ready_and_a_full_validation_requested(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    db = unique("cap_stmt")
    mariadb.query(f"CREATE DATABASE {db}")
    mariadb.query(f"CREATE TABLE {db}.s (id INT PRIMARY KEY, v INT NOT NULL)")
    mariadb.query(f"CREATE TABLE {db}.other (id INT PRIMARY KEY, v INT NOT NULL)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db, include=[f"{db}.s"]))
    engine = state_engine(settings.state.dsn)
    before = _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "statement")
    caplog.set_level(logging.WARNING, logger="cdc_repair")
    start = master_position(mariadb)
    with running_tailer(settings) as tailer, contextlib.closing(mariadb.root_connection()) as conn:
        mariadb.query(f"INSERT INTO {db}.s VALUES (1, 1)")
        bulk = _bulk(mariadb, f"{db}.s", 100)
        _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "1", "1")})
        assert tailer.health()["ready"] is True
        with conn.cursor() as cur:
            cur.execute("SET SESSION binlog_format = 'STATEMENT'")
            cur.execute(f"INSERT INTO {db}.other VALUES (1, 1)")  # not an included table: no alarm by itself
            mariadb.query(f"INSERT INTO {db}.s VALUES (9, 9)")  # a row change after it (another session: ROW)
            _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "9", "9")})  # so the statement was read
            assert tailer.health()["ready"] is True and not _open_requests(engine)
            cur.execute(f"INSERT INTO {db}.s VALUES (2, 2)")
            cur.execute(f"UPDATE {db}.s SET v = 3 WHERE id = 1")
        _wait(lambda: tailer.health()["ready"] is False, "not ready after statement DML")
        requests = _open_requests(engine)
        assert len(requests) == 1 and f"{db}.s" in requests[0]["detail"], requests
        lines = [r.getMessage() for r in caplog.records if "binlog_format" in r.getMessage()]
        assert len(lines) == 1, lines
        assert f"{db}.s" in lines[0] and "SET GLOBAL binlog_format" in lines[0] and "full validation" in lines[0]
        assert tailer.health()["degraded"]
        # capture continues with the changes that do arrive as rows
        mariadb.query(f"INSERT INTO {db}.s VALUES (4, 4)")
        bulk += _bulk(mariadb, f"{db}.s", 200)
        _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "4", "4")})
        assert _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "statement") == before + 2
        _statement_rows_only_by_validation(mariadb, broker, settings.kafka.topic.name, db, "s", start,
                                           rows={("INSERT", 1, 1), ("INSERT", 9, 9), ("INSERT", 4, 4), *bulk},
                                           statements=["VALUES (2, 2)", "SET v = 3 WHERE id = 1"],
                                           absent={("INSERT", 2, 2), ("UPDATE", 1, 3)})
        # the scheduler answers the request (a full validation): ready again
        runs.close_full_scan_requests(engine, [int(r["id"]) for r in requests], "answered by the test")
        _wait(lambda: tailer.health()["ready"] is True, "ready after the full validation ran", timeout_s=30)
    engine.dispose()


@pytest.mark.parametrize("fmt", ["STATEMENT", "MIXED"])
def test_global_statement_format_is_reported_and_its_dml_requests_a_full_validation(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker, caplog: pytest.LogCaptureFixture, fmt: str) -> None:
    db = unique("cap_gstmt")
    mariadb.query(f"CREATE DATABASE {db}")
    mariadb.query(f"CREATE TABLE {db}.g (id INT PRIMARY KEY, v INT NOT NULL)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    engine = state_engine(settings.state.dsn)
    caplog.set_level(logging.WARNING, logger="cdc_repair")
    start = master_position(mariadb)
    with running_tailer(settings) as tailer:
        bulk = _bulk(mariadb, f"{db}.g", 100)
        with _global(mariadb, "binlog_format", fmt):
            _wait(lambda: tailer.health()["ready"] is False, "not ready after SET GLOBAL binlog_format")
            assert any(f"binlog_format is {fmt}" in r.getMessage() for r in caplog.records)
            assert not _open_requests(engine)
            mariadb.query(f"INSERT INTO {db}.g VALUES (1, 1)")  # a new session: logged as a statement
            _wait(lambda: bool(_open_requests(engine)), "a full validation request")
        mariadb.query(f"INSERT INTO {db}.g VALUES (2, 2)")
        bulk += _bulk(mariadb, f"{db}.g", 200)
        _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "2", "2")})
        assert tailer.health()["ready"] is False  # until the requested validation has run
        _statement_rows_only_by_validation(mariadb, broker, settings.kafka.topic.name, db, "g", start,
                                           rows={("INSERT", 2, 2), *bulk}, statements=["VALUES (1, 1)"],
                                           absent={("INSERT", 1, 1)})
        runs.close_full_scan_requests(engine, [int(r["id"]) for r in _open_requests(engine)], "answered")
        _wait(lambda: tailer.health()["ready"] is True, "ready again", timeout_s=30)
    engine.dispose()


def _partial_skipped_full_in_kafka(mariadb: MariaDBServer, broker: Broker, topic: str, db: str,
                                   start: tuple[str, int], full: set[Change]) -> None:
    """Against the server's binlog: the one row logged with a MINIMAL image (key before, changed column after) is
    skipped, not published half; every row logged with FULL images, before and after it, is in Kafka."""
    rows = binlog_rows(mariadb, db, "m", start, master_position(mariadb))
    partial = [r for r in rows if not r.full(3)]
    assert [(r.kind, r.before, r.image) for r in partial] == [("UPDATE", {1: "1"}, {2: "2"})], partial
    changes = [r.change() for r in rows if r.full(3)]
    assert set(changes) == full, sorted(set(changes) ^ full)
    in_kafka = kafka_changes(await_in_kafka(broker, topic, "m", changes), "m")
    assert ("UPDATE", 2) not in {(kind, v) for kind, _, v in in_kafka}  # no half row, under any key


def test_minimal_row_image_then_full_again_has_a_documented_way_forward(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("cap_min")
    mariadb.query(f"CREATE DATABASE {db}")
    mariadb.query(f"CREATE TABLE {db}.m (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(20))")
    config = write_config(tmp_path, mariadb, broker, db)
    settings = settings_of(config)
    engine = state_engine(settings.state.dsn)
    start = master_position(mariadb)
    tailer, thread, errors = _tailer_thread(settings)
    assert tailer.ready.wait(60)
    mariadb.query(f"INSERT INTO {db}.m VALUES (1, 1, 'a')")
    bulk = _bulk(mariadb, f"{db}.m", 100, ", 'x'")
    _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "1", "1")})
    with _global(mariadb, "binlog_row_image", "MINIMAL"):
        mariadb.query(f"UPDATE {db}.m SET v = 2 WHERE id = 1")  # a new session: logged with a partial image
        thread.join(60)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], SchemaDriftError), errors
    first = str(errors[0])
    assert "binlog_row_image is MINIMAL" in first and "on_partial_image: skip_and_full_validate" in first, first
    # FULL again: the partial event is still in the binlog ahead of the checkpoint; the error must say so
    mariadb.query(f"UPDATE {db}.m SET v = 3 WHERE id = 1")
    mariadb.query(f"INSERT INTO {db}.m VALUES (2, 2, 'b')")
    bulk += _bulk(mariadb, f"{db}.m", 200, ", 'x'")
    with pytest.raises(SchemaDriftError) as again:
        Tailer(settings, settings.capture[0]).run(threading.Event())
    message = str(again.value)
    assert "FULL now" in message and "SET GLOBAL binlog_row_image" not in message, message
    assert "on_partial_image: skip_and_full_validate" in message
    assert not _open_requests(engine)
    # the documented way forward
    before = _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "partial_image")
    skip = settings_of(write_config(tmp_path, mariadb, broker, db, name="skip.yaml",
                                    on_partial_image="skip_and_full_validate"))
    with running_tailer(skip) as tailer:
        _stream_rows(broker, settings.kafka.topic.name, {("UPDATE", "1", "3"), ("INSERT", "2", "2")})
        requests = _open_requests(engine)
        assert len(requests) == 1 and f"{db}.m" in requests[0]["detail"], requests
        assert _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "partial_image") == before + 1
        assert tailer.health()["ready"] is False
        mariadb.query(f"INSERT INTO {db}.m VALUES (3, 3, 'c')")
        _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "3", "3")})
        _partial_skipped_full_in_kafka(mariadb, broker, settings.kafka.topic.name, db, start, {
            ("INSERT", 1, 1), ("UPDATE", 1, 3), ("INSERT", 2, 2), ("INSERT", 3, 3), *bulk})
    # restarted (back to on_partial_image: fail, past the partial event): still not ready until the validation ran
    with running_tailer(settings) as tailer:
        _wait(lambda: tailer.health()["degraded"] is not None, "the open request noticed after a restart")
        assert tailer.health()["ready"] is False and len(_open_requests(engine)) == 1
        runs.close_full_scan_requests(engine, [int(r["id"]) for r in requests], "answered")
        _wait(lambda: tailer.health()["ready"] is True, "ready again", timeout_s=30)
    saved = checkpoints.load_checkpoint(engine, "author")
    assert saved is not None
    engine.dispose()


def test_a_full_validation_request_is_reused_only_while_no_run_can_have_picked_it_up(mariadb: MariaDBServer) -> None:
    from cdc_repair.state import scan_requests

    engine = state_engine(mariadb.dsn(unique("st_req")))
    try:
        first = scan_requests.request_full_scan_once(engine, "capture a: x", None)
        assert scan_requests.request_full_scan_once(engine, "capture a: y", first) == first  # not picked up yet
        run = runs.start_run(engine, scan_requests.ANSWERING_JOB, "h")  # the scheduler starts answering it
        second = scan_requests.request_full_scan_once(engine, "capture a: z", first)
        assert second > first  # a change seen now may be missed by the run that has started
        runs.finish_run(engine, run, "ok")
        runs.close_full_scan_requests(engine, [first], "answered")
        assert not scan_requests.request_open(engine, first) and scan_requests.request_open(engine, second)
        assert scan_requests.request_full_scan_once(engine, "capture a: v", second) == second  # no run since
        runs.finish_run(engine, runs.start_run(engine, scan_requests.ANSWERING_JOB, "h"), "ok")  # ran after it
        third = scan_requests.request_full_scan_once(engine, "capture a: w", second)
        assert third > second and [r["detail"] for r in runs.pending_full_scan_requests(engine)] == [
            "capture a: z", "capture a: w"]
    finally:
        engine.dispose()


def test_compressed_events_switched_on_mid_run_are_never_dropped_silently(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    """log_bin_compress switched on while capture runs (the start-up check refuses it, not a later switch): the
    library reads compressed rows events as an unknown event type and drops them. Capture must stop with a line
    naming the setting and the way forward, and with on_partial_image: skip_and_full_validate skip the event,
    request a full validation and go not ready, as for a partial row image."""
    db = unique("cap_zip")
    mariadb.query(f"CREATE DATABASE {db}")
    mariadb.query(f"CREATE TABLE {db}.z (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(2000))")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    engine = state_engine(settings.state.dsn)
    tailer, thread, errors = _tailer_thread(settings)
    assert tailer.ready.wait(60)
    mariadb.query(f"INSERT INTO {db}.z VALUES (1, 1, 'a')")
    _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "1", "1")})
    with _global(mariadb, "log_bin_compress", "ON"):
        mariadb.query(f"INSERT INTO {db}.z VALUES (2, 2, '{'x' * 1000}')")  # over log_bin_compress_min_len
        thread.join(60)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], SchemaDriftError), errors
    first = str(errors[0])
    assert f"INSERT on {db}.z" in first and "compressed" in first, first
    assert "log_bin_compress is ON" in first and "SET GLOBAL log_bin_compress=OFF" in first, first
    assert "on_partial_image: skip_and_full_validate" in first, first
    mariadb.query(f"INSERT INTO {db}.z VALUES (3, 3, 'c')")
    # OFF again: the event is still ahead of the checkpoint (a new reader: the library reads it this time, right
    # after the table's first TABLE_MAP)
    tailer, thread, errors = _tailer_thread(settings)
    thread.join(60)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], SchemaDriftError), errors
    assert "log_bin_compress is OFF now" in str(errors[0]), errors[0]
    assert not _open_requests(engine)
    # the documented way forward
    before = _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "compressed")
    skip = settings_of(write_config(tmp_path, mariadb, broker, db, name="skip.yaml",
                                    on_partial_image="skip_and_full_validate"))
    with running_tailer(skip) as running:
        _stream_rows(broker, settings.kafka.topic.name, {("INSERT", "3", "3")})
        requests = _open_requests(engine)
        assert len(requests) == 1 and f"{db}.z" in requests[0]["detail"], requests
        assert "compressed" in requests[0]["detail"]
        assert _counter(metrics.CAPTURE_UNCAPTURABLE, "author", "compressed") == before + 1
        assert running.health()["ready"] is False
        runs.close_full_scan_requests(engine, [int(r["id"]) for r in requests], "answered")
        _wait(lambda: running.health()["ready"] is True, "ready again", timeout_s=30)
    engine.dispose()
