"""Canal fidelity against the real MariaDB and broker: transaction boundaries, GTIDs, value and type rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path

from capture_support import read_messages, rows_of, running_tailer, settings_of, unique, write_config

from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


def _last_gtid(cur: object) -> str:
    cur.execute("SELECT @@gtid_binlog_pos")  # type: ignore[attr-defined]
    return str(cur.fetchone()[0])  # type: ignore[attr-defined]


def _binlog_gtids(mariadb: MariaDBServer, db: str) -> list[str]:
    """GTIDs of the transactions touching `db`, in binlog order, from `mariadb-binlog` (an independent decoder)."""
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = Path(str(cur.fetchone()[0]))
        cur.execute("SHOW BINARY LOGS")
        files = [str(r[0]) for r in cur.fetchall()]
    conn.close()
    tool = next(p for p in ("mariadb-binlog", "mysqlbinlog") if subprocess.run(["which", p], capture_output=True)
                .returncode == 0)
    out = subprocess.run([tool, "--base64-output=decode-rows", "-v", *[str(datadir / f) for f in files]],
                         capture_output=True, text=True, errors="replace", check=True).stdout
    gtids: list[str] = []
    current = ""
    for line in out.splitlines():
        if "GTID " in line and line.startswith("#") and "GTID" in line.split():
            current = line.split("GTID", 1)[1].split()[0]
        elif line.startswith("### ") and f"`{db}`." in line and (not gtids or gtids[-1] != current):
            gtids.append(current)
    return gtids


def test_autocommit_insert_update_delete_carry_their_own_gtid(tmp_path: Path, mariadb: MariaDBServer,
                                                              broker: Broker) -> None:
    db = unique("canal_gtid")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    expected: list[tuple[str, str]] = []
    with running_tailer(settings), conn.cursor() as cur:
        for kind, sql in (("INSERT", f"INSERT INTO {db}.t VALUES (1, 1)"),
                          ("UPDATE", f"UPDATE {db}.t SET v = 2 WHERE id = 1"),
                          ("DELETE", f"DELETE FROM {db}.t WHERE id = 1")):
            cur.execute(sql)  # autocommit: one transaction each
            expected.append((kind, _last_gtid(cur)))
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: len([m for m in ms if not m.is_ddl]) >= 3)]
    dml = [m for m in msgs if not m.is_ddl]
    assert [(m.type, m.gtid) for m in dml] == expected
    assert [g for _, g in expected] == _binlog_gtids(mariadb, db)
    assert len({m.id for m in dml}) == 3  # `id` names each message's own transaction too


def test_one_transaction_per_message_by_default(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("canal_txn")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    gtid_of: dict[str, str] = {}
    with running_tailer(settings), conn.cursor() as cur:
        for i in range(200):  # fast single-row autocommit transactions
            cur.execute(f"INSERT INTO {db}.t VALUES ({i}, {i})")
            gtid_of[str(i)] = _last_gtid(cur)
        conn.begin()  # one transaction, two statements: its rows may share a message (Canal: per rows event)
        cur.execute(f"INSERT INTO {db}.t VALUES (1000, 0), (1001, 0)")
        cur.execute(f"INSERT INTO {db}.t VALUES (1002, 0)")
        conn.commit()
        big = _last_gtid(cur)
        for k in ("1000", "1001", "1002"):
            gtid_of[k] = big
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: len(rows_of(ms, "INSERT")) >= 203)]
    for m in (m for m in msgs if not m.is_ddl):
        assert {gtid_of[r["id"] or ""] for r in m.data or []} == {m.gtid}, m  # rows of one transaction only
    assert len({m.id for m in msgs if m.gtid != big}) == 200


def test_cross_transaction_grouping_is_an_option_and_names_the_last_transaction(
        tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    db = unique("canal_grouped")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db, group_across_transactions=True))
    seq_of: dict[str, int] = {}
    with running_tailer(settings), conn.cursor() as cur:
        for i in range(300):
            cur.execute(f"INSERT INTO {db}.t VALUES ({i}, {i})")
            seq_of[str(i)] = int(_last_gtid(cur).rsplit("-", 1)[1])
        msgs = [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: len(rows_of(ms, "INSERT")) >= 300)]
    dml = [m for m in msgs if not m.is_ddl]
    assert any(len(m.data or []) > 1 for m in dml)  # grouped across transactions
    for m in dml:  # `gtid` is the last transaction whose rows it holds
        assert int(m.gtid.rsplit("-", 1)[1]) == max(seq_of[r["id"] or ""] for r in m.data or [])


CANAL_TYPES_DDL = """CREATE TABLE {db}.c (
  id INT PRIMARY KEY, flag TINYINT(1), n5 INT(5), z INT(6) UNSIGNED ZEROFILL, dd DOUBLE(10,2), f FLOAT,
  db DOUBLE, e ENUM('red','green','blue'), s SET('a','b','c','d'), p POINT) CHARSET utf8mb4"""


def _types_messages(tmp_path: Path, mariadb: MariaDBServer, broker: Broker, **capture: str) -> list[FlatMessage]:
    db = unique("canal_types")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(CANAL_TYPES_DDL.format(db=db))
    settings = settings_of(write_config(tmp_path, mariadb, broker, db, **capture))
    with running_tailer(settings), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.c VALUES (1, 1, 42, 7, 12.5, 10000000, 0.00001, 'green', 'a,c', "
                    f"POINT(1, 2))")
        cur.execute(f"INSERT INTO {db}.c VALUES (2, 0, -3, 0, 0.5, 3.4e38, 123456789, 'blue', 'b,c,d', NULL)")
        cur.execute(f"INSERT INTO {db}.c VALUES (3, NULL, NULL, NULL, NULL, 0.001, 1e-3, NULL, '', NULL)")
        cur.execute(f"INSERT INTO {db}.c VALUES (4, NULL, NULL, NULL, NULL, -1.5, 1e7, 'red', 'd', NULL)")
        return [m for _, _, m in read_messages(broker, settings.kafka.topic.name,
                                               lambda ms: len(rows_of(ms, "INSERT")) >= 4)]


def test_values_and_mysql_types_as_canal_renders_them(tmp_path: Path, mariadb: MariaDBServer,
                                                      broker: Broker) -> None:
    msgs = _types_messages(tmp_path, mariadb, broker)
    rows = {r["id"]: r for r in rows_of(msgs, "INSERT")}
    cols = ("flag", "n5", "z", "dd", "f", "db", "e", "s")
    assert [rows["1"][c] for c in cols] == ["1", "42", "7", "12.5", "1.0E7", "1.0E-5", "2", "5"]
    assert [rows["2"][c] for c in cols] == ["0", "-3", "0", "0.5", "3.4E38", "1.23456789E8", "3", "14"]
    assert [rows["3"][c] for c in ("f", "db", "e", "s")] == ["0.001", "0.001", None, "0"]
    assert [rows["4"][c] for c in ("f", "db", "e", "s")] == ["-1.5", "1.0E7", "1", "8"]
    insert = next(m for m in msgs if m.type == "INSERT")
    assert insert.mysql_type == {"id": "int(11)", "flag": "tinyint(1)", "n5": "int(5)",
                                 "z": "int(6) unsigned zerofill", "dd": "double(10,2)", "f": "float",
                                 "db": "double", "e": "enum('red','green','blue')", "s": "set('a','b','c','d')",
                                 "p": "point"}
    assert insert.sql_type is not None and (insert.sql_type["e"], insert.sql_type["s"]) == (4, -7)


def test_enum_and_set_labels_are_an_option(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> None:
    msgs = _types_messages(tmp_path, mariadb, broker, enum_set="label")
    rows = {r["id"]: r for r in rows_of(msgs, "INSERT")}
    assert [(rows[k]["e"], rows[k]["s"]) for k in ("1", "2", "3", "4")] == [
        ("green", "a,c"), ("blue", "b,c,d"), (None, ""), ("red", "d")]
    insert = next(m for m in msgs if m.type == "INSERT")
    assert insert.sql_type is not None and (insert.sql_type["e"], insert.sql_type["s"]) == (12, 12)


def test_mysql_type_follows_the_schema_version_of_each_row(tmp_path: Path, mariadb: MariaDBServer,
                                                           broker: Broker) -> None:
    db = unique("canal_alter")
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, n INT(5))")
    settings = settings_of(write_config(tmp_path, mariadb, broker, db))
    topic = settings.kafka.topic.name
    with running_tailer(settings), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.t VALUES (1, 1)")
        read_messages(broker, topic, lambda ms: len(rows_of(ms, "INSERT")) >= 1)
        cur.execute(f"ALTER TABLE {db}.t MODIFY n BIGINT(8) UNSIGNED ZEROFILL")
        cur.execute(f"INSERT INTO {db}.t VALUES (2, 2)")
        msgs = [m for _, _, m in read_messages(broker, topic, lambda ms: len(rows_of(ms, "INSERT")) >= 2)]
    types = {(m.data or [{}])[0]["id"]: (m.mysql_type or {}).get("n") for m in msgs if m.type == "INSERT"}
    assert types == {"1": "int(5)", "2": "bigint(8) unsigned zerofill"}
