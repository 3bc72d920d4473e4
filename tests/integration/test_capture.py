"""Capture against the real MariaDB and broker: values, multi-row events, DDL, purge, status."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import yaml
from capture_support import (
    caught_up,
    read_messages,
    rows_of,
    running_tailer,
    settings_of,
    unique,
    write_config,
)

from cdc_repair import metrics
from cdc_repair.errors import BinlogPurgedError, ServerSettingsError
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair.sink.partitioning import partition_for
from cdc_repair.source.status import capture_status
from cdc_repair.source.tailer import Tailer
from cdc_repair.state import checkpoints
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.devservices.process import free_port

TYPES_DDL = """CREATE TABLE {db}.t (
  id BIGINT UNSIGNED PRIMARY KEY, i INT, ti TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT,
  d DECIMAL(20,6), d2 DECIMAL(5,0), f FLOAT, db DOUBLE, dt DATETIME(6), dt0 DATETIME, ts TIMESTAMP(3) NULL,
  da DATE, tm TIME(2), y YEAR, vc VARCHAR(100), ch CHAR(5), vb VARBINARY(20), bl BLOB, tx TEXT, js JSON,
  e ENUM('a','b','c'), st SET('x','y','z'), bt BIT(10)) CHARSET utf8mb4"""

FULL_ROW = {
    "id": "18446744073709551615", "i": "-2147483648", "ti": "255", "si": "-5", "mi": "-8388608",
    "d": "-12345678901234.123456", "d2": "99999", "f": "1.5", "db": "3.14159", "dt": "2024-02-29 23:59:58.123456",
    "dt0": "1999-12-31 01:02:03", "ts": "2024-01-01 00:00:00.500", "da": "2024-03-01", "tm": "-12:34:56.78",
    "y": "2024", "vc": "héllo 😀", "ch": "ab", "vb": "\x00ÿ\x10", "bl": "Þ\xad¾ï\x00", "tx": "text ☃",
    "js": '{"a": [1, 2.5, "x"]}', "e": "2", "st": "5", "bt": "513",  # Canal: ENUM index, SET bitmask
}
NULL_ROW = {name: None for name in FULL_ROW} | {"id": "1"}
INSERT_FULL = """INSERT INTO {db}.t VALUES (18446744073709551615, -2147483648, 255, -5, -8388608,
  -12345678901234.123456, 99999, 1.5, 3.14159, '2024-02-29 23:59:58.123456', '1999-12-31 01:02:03',
  '2024-01-01 00:00:00.5', '2024-03-01', '-12:34:56.78', 2024, 'héllo 😀', 'ab', x'00ff10', x'deadbeef00',
  'text ☃', '{{"a": [1, 2.5, "x"]}}', 'b', 'x,z', b'1000000001'), (1, {nulls})"""


def _by_id(rows: list[dict[str, str | None]]) -> dict[str | None, dict[str, str | None]]:
    return {r["id"]: r for r in rows}


def test_values_of_every_type_in_insert_update_delete(tmp_path: Path, mariadb: MariaDBServer,
                                                      broker: Broker) -> None:
    db = unique("cap_types")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(TYPES_DDL.format(db=db))
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    with running_tailer(settings), conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(INSERT_FULL.format(db=db, nulls=", ".join(["NULL"] * 23)))
        cur.execute(f"UPDATE {db}.t SET vc = 'new', tx = NULL WHERE id IN (1, 18446744073709551615)")
        cur.execute(f"DELETE FROM {db}.t")

        def done(msgs: list[FlatMessage]) -> bool:
            return all(len(rows_of(msgs, k)) >= 2 for k in ("INSERT", "UPDATE", "DELETE"))

        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name, done)]
    dml = [m for m in msgs if not m.is_ddl]
    assert {(m.database, m.table) for m in dml} == {(db, "t")}
    assert all(m.pk_names == ["id"] and m.gtid and m.es > 0 and m.ts >= m.es - 5000 for m in dml)
    assert _by_id(rows_of(msgs, "INSERT")) == {"18446744073709551615": FULL_ROW, "1": NULL_ROW}
    after = {**FULL_ROW, "vc": "new", "tx": None}
    assert _by_id(rows_of(msgs, "UPDATE")) == {"18446744073709551615": after, "1": {**NULL_ROW, "vc": "new"}}
    olds = {row["id"]: old for m in msgs if m.type == "UPDATE"
            for row, old in zip(m.data or [], m.old or [], strict=True)}
    assert olds == {"18446744073709551615": {"vc": "héllo 😀", "tx": "text ☃"}, "1": {"vc": None}}
    assert _by_id(rows_of(msgs, "DELETE")) == {"18446744073709551615": after, "1": {**NULL_ROW, "vc": "new"}}
    assert all(m.old is None for m in msgs if m.type in ("INSERT", "DELETE"))
    insert = next(m for m in msgs if m.type == "INSERT" and any(r["id"] == "1" for r in m.data or []))
    assert insert.mysql_type is not None and insert.sql_type is not None
    assert insert.mysql_type["id"] == "bigint(20) unsigned" and insert.mysql_type["d"] == "decimal(20,6)"
    assert insert.mysql_type["vc"] == "varchar(100)" and insert.mysql_type["bl"] == "blob"
    assert (insert.sql_type["i"], insert.sql_type["vc"], insert.sql_type["bl"], insert.sql_type["tx"],
            insert.sql_type["dt"], insert.sql_type["d"]) == (4, 12, 2004, 2005, 93, 3)
    big = next(m for m in msgs if m.type == "INSERT" and any(r["id"] != "1" for r in m.data or []))
    assert big.sql_type and big.sql_type["id"] == 3  # unsigned above the signed max: widened as Canal does
    create = [m for m in msgs if m.is_ddl]
    assert create == []  # the table existed before the tailer started


def test_alter_table_mid_stream_changes_column_names(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("cap_alter")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    with running_tailer(settings), conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {db}.a (id INT PRIMARY KEY, x VARCHAR(10))")
        cur.execute(f"INSERT INTO {db}.a VALUES (1, 'one')")
        cur.execute(f"ALTER TABLE {db}.a ADD COLUMN y INT")
        cur.execute(f"INSERT INTO {db}.a VALUES (2, 'two', 22)")
        cur.execute(f"ALTER TABLE {db}.a DROP COLUMN x")
        cur.execute(f"INSERT INTO {db}.a VALUES (3, 33)")
        cur.execute(f"ALTER TABLE {db}.a CHANGE y z INT")
        cur.execute(f"UPDATE {db}.a SET z = 34 WHERE id = 3")
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: any(m.type == "UPDATE" for m in ms))]
    ddl = [(m.type, m.table) for m in msgs if m.is_ddl]
    assert ddl == [("CREATE", "a"), ("ALTER", "a"), ("ALTER", "a"), ("ALTER", "a")]
    assert all(m.sql and m.data is None and m.database == db for m in msgs if m.is_ddl)
    assert _by_id(rows_of(msgs, "INSERT")) == {"1": {"id": "1", "x": "one"}, "2": {"id": "2", "x": "two", "y": "22"},
                                               "3": {"id": "3", "y": "33"}}
    update = next(m for m in msgs if m.type == "UPDATE")
    assert update.data == [{"id": "3", "z": "34"}] and update.old == [{"z": "33"}]


def _purged_metric(source: str) -> float:
    return metrics.REGISTRY.get_sample_value("cdc_repair_source_binlog_purged_total", {"source": source}) or 0.0


def test_purged_checkpoint_fails_clearly_or_resumes_with_a_full_scan_request(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("cap_purge")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.p (id INT PRIMARY KEY)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    engine = state_engine(settings.state.dsn)
    checkpoints.save_checkpoint(engine, "author", "binlog.000000", 1234, None, None)
    before = _purged_metric("author")
    with pytest.raises(BinlogPurgedError, match=r"binlog.000000:1234 points into a purged binlog.*on_purged"):
        Tailer(settings, settings.capture[0]).run(threading.Event())
    assert _purged_metric("author") == before + 1
    assert not checkpoints.full_scan_requested(engine)

    fallback = settings_of(write_config(tmp_path, mariadb, broker, db, name="fallback.yaml",
                                        on_purged="resume_and_full_validate"))
    with running_tailer(fallback) as tailer, conn.cursor() as cur:
        assert checkpoints.full_scan_requested(engine)
        assert tailer.health()["ready"] is True
        cur.execute(f"INSERT INTO {db}.p VALUES (7)")
        msgs = [m for _, _, m in read_messages(broker, fallback.kafka.topic.name,
                                               lambda ms: bool(rows_of(ms, "INSERT")))]
    assert rows_of(msgs, "INSERT") == [{"id": "7"}]
    assert _purged_metric("author") == before + 2
    with conn.cursor() as cur:
        cur.execute(f"SELECT outcome, detail FROM st_{db}.job_run WHERE job = 'full_scan_requested'")
        outcome, detail = cur.fetchone()
    assert outcome == "pending" and "purged" in detail


def test_checkpoint_follows_the_stream_and_status_reports_no_lag(tmp_path: Path, mariadb: MariaDBServer,
                                                                  broker: Broker) -> None:
    db = unique("cap_status")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.s (id INT PRIMARY KEY, v INT)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    with running_tailer(settings) as tailer, conn.cursor() as cur:
        for i in range(50):
            cur.execute(f"INSERT INTO {db}.s VALUES ({i}, {i})")
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            saved = checkpoints.load_checkpoint(state_engine(settings.state.dsn), "author")
            if saved and ((saved.binlog_file, saved.binlog_pos) >= (file, pos) or caught_up(settings)):
                break  # caught up: at most the tailer's own checkpoint write follows (it saves nothing for that)
            time.sleep(0.2)
        else:
            raise AssertionError(f"checkpoint never reached {file}:{pos}: {tailer.health()}")
        health = tailer.health()
    assert health["checkpoint"] and health["lag_s"] is not None and health["lag_s"] < 30
    doc = capture_status(settings)
    (src,) = doc["sources"]
    assert src["source"] == "author" and src["error"] is None
    assert (src["binlog_file"], src["binlog_pos"]) >= (file, pos) or src["lag_bytes"] == 0
    assert src["lag_bytes"] is not None and src["lag_bytes"] < 50_000  # other tests may write meanwhile
    assert doc["full_scan_requested"] is False


def test_startup_refuses_a_server_without_full_row_metadata(tmp_path: Path, mariadb: MariaDBServer,
                                                            broker: Broker) -> None:
    db = unique("cap_meta")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    with mariadb.root_connection().cursor() as cur:
        cur.execute("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
        try:
            with pytest.raises(ServerSettingsError, match=r"binlog_row_metadata is MINIMAL, must be FULL.*my.cnf"):
                Tailer(settings, settings.capture[0]).run(threading.Event())
        finally:
            cur.execute("SET GLOBAL binlog_row_metadata = 'FULL'")


def test_startup_refuses_a_user_without_replication_privileges(tmp_path: Path, mariadb: MariaDBServer,
                                                               broker: Broker) -> None:
    db = unique("cap_priv")
    user = db[-12:]
    with mariadb.root_connection().cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT SELECT ON *.* TO '{user}'@'%'")
    path = write_config(tmp_path, mariadb, broker, db)
    raw = yaml.safe_load(path.read_text())
    raw["servers"]["author"]["dsn"] = f"mysql://{user}:pw@127.0.0.1:{mariadb.port}/"
    path.write_text(yaml.safe_dump(raw))
    settings = settings_of(path)
    with pytest.raises(ServerSettingsError, match=r"missing REPLICATION SLAVE \(GRANT REPLICATION SLAVE ON"):
        Tailer(settings, settings.capture[0]).run(threading.Event())


def test_unreachable_broker_is_retried_with_a_log_line_not_an_exit(tmp_path: Path, mariadb: MariaDBServer,
                                                                   broker: Broker,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    db = unique("cap_nobroker")
    path = write_config(tmp_path, mariadb, broker, db)
    raw = yaml.safe_load(path.read_text())
    raw["kafka"]["bootstrap_servers"] = [f"127.0.0.1:{free_port()}"]
    path.write_text(yaml.safe_dump(raw))
    settings = settings_of(path)
    tailer = Tailer(settings, settings.capture[0])
    stop = threading.Event()
    caplog.set_level(logging.WARNING, logger="cdc_repair")
    thread = threading.Thread(target=tailer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while "unreachable (" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert thread.is_alive()
        assert f"Kafka broker at {raw['kafka']['bootstrap_servers'][0]} unreachable" in caplog.text
        assert not tailer.ready.is_set()
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_per_table_topics_and_pk_partitions(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("cap_topics")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.one (id INT PRIMARY KEY, v INT)")
        cur.execute(f"CREATE TABLE {db}.two (a VARCHAR(10), b INT, v INT, PRIMARY KEY (a, b))")
    path = write_config(tmp_path, mariadb, broker, db)
    raw = yaml.safe_load(path.read_text())
    prefix = f"{db}."
    raw["kafka"]["topic"] = {"mode": "per_table", "name": f"{db}-default", "prefix": prefix}
    path.write_text(yaml.safe_dump(raw))
    settings = settings_of(path)
    with running_tailer(settings), conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {db}.one VALUES (%s, %s)", [(i, i) for i in range(30)])
        cur.executemany(f"INSERT INTO {db}.two VALUES (%s, %s, %s)", [(f"k{i}", i, i) for i in range(30)])
        one = read_messages(broker, f"{prefix}{db}_one", lambda ms: len(rows_of(ms, "INSERT")) >= 30)
        two = read_messages(broker, f"{prefix}{db}_two", lambda ms: len(rows_of(ms, "INSERT")) >= 30)
    assert {m.table for _, _, m in one} == {"one"} and {m.table for _, _, m in two} == {"two"}
    for records, names in ((one, ["id"]), (two, ["a", "b"])):
        for partition, _, msg in records:
            assert msg.pk_names == names
            for key in msg.pk_values():  # every row sits in the partition its PK hashes to
                assert partition == partition_for(list(key), settings.kafka.partitions, database=db)
    assert len({p for p, _, _ in one}) > 1  # 30 keys spread over the partitions


@pytest.mark.parametrize("how", ["timestamp", "position"])
def test_first_start_at_a_timestamp_or_position_skips_what_came_before(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker, how: str) -> None:
    """No checkpoint yet, `start: {timestamp}` or `{file, pos}`: changes before it are not produced, later ones are
    (including changes made before the tailer started, which `start: current` would skip)."""
    db = unique(f"cap_start_{how[:3]}")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO {db}.t VALUES (1)")
        time.sleep(1.2)  # binlog event times have whole seconds
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
        boundary = float(int(time.time()) + 1)
        time.sleep(max(0.0, boundary - time.time()) + 0.05)
        cur.execute(f"INSERT INTO {db}.t VALUES (2)")
    start = {"timestamp": boundary} if how == "timestamp" else {"file": file, "pos": pos}
    settings = settings_of(write_config(tmp_path, mariadb, broker, db, start=start))
    with running_tailer(settings), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.t VALUES (3)")
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: {"id": "3"} in rows_of(ms, "INSERT"))]
    assert sorted(r["id"] or "" for r in rows_of(msgs, "INSERT")) == ["2", "3"]  # 2 and 3: other partitions


def test_start_timestamp_saves_no_checkpoint_until_a_transaction_after_it(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    """Stopped while every transaction is still older than the start timestamp, the tailer must not have saved
    a checkpoint amid them: the restart resolves the timestamp again and old rows never reach Kafka."""
    db = unique("cap_start_idle")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO {db}.t VALUES (1)")
    boundary = float(int(time.time()) + 2)
    settings = settings_of(write_config(tmp_path, mariadb, broker, db, start={"timestamp": boundary}))
    engine = state_engine(settings.state.dsn)
    with running_tailer(settings):
        time.sleep(1.5)  # heartbeats arrive; nothing is at or after the start timestamp yet
    assert checkpoints.load_checkpoint(engine, "author") is None
    time.sleep(max(0.0, boundary - time.time()) + 0.05)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.t VALUES (2)")
    with running_tailer(settings):
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: {"id": "2"} in rows_of(ms, "INSERT"))]
        deadline = time.monotonic() + 30
        while checkpoints.load_checkpoint(engine, "author") is None and time.monotonic() < deadline:
            time.sleep(0.2)
    assert rows_of(msgs, "INSERT") == [{"id": "2"}]
    assert checkpoints.load_checkpoint(engine, "author") is not None
