"""Capture across a MariaDB restart: the server numbers tables again from scratch, so a table id of the old
binlog file can name another table in the new one. Found by the soak's binlog oracle: after a restart, 36 row
changes of `articles` were published as `published_articles` rows (drafts shown as published online rows),
because the reader kept the old file's table map (freeze_schema) when the stream crossed into the new file."""

from __future__ import annotations

import random
import re
import uuid
from pathlib import Path

from capture_support import read_messages, running_tailer, write_config

from cdc_repair.config import load_settings
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


def _table_ids(server: MariaDBServer, binlog: str) -> dict[str, int]:
    ids: dict[str, int] = {}
    for row in server.query(f"SHOW BINLOG EVENTS IN '{binlog}'"):
        found = re.match(r"table_id: (\d+) \(([^)]+)\)", str(row[5]))
        if row[2] == "Table_map" and found:
            ids[found.group(2)] = int(found.group(1))
    return ids


def test_rows_keep_their_table_when_a_restart_reuses_table_ids(tmp_path: Path, broker: Broker) -> None:
    server = MariaDBServer(tmp_path / "db", server_id=random.randint(100, 10_000)).start()
    try:
        db = f"tid_{uuid.uuid4().hex[:8]}"
        server.query(f"CREATE DATABASE {db}")
        for t in ("a", "b"):
            server.query(f"CREATE TABLE {db}.{t} (id INT NOT NULL PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB")
        file, pos = server.query("SHOW MASTER STATUS")[0][:2]
        server.query(f"INSERT INTO {db}.a VALUES (101, 'a'), (102, 'a')")
        server.query(f"INSERT INTO {db}.b VALUES (201, 'b'), (202, 'b')")
        before = _table_ids(server, str(file))
        server.restart()
        server.query(f"INSERT INTO {db}.b VALUES (203, 'b')")  # opened first now: takes the lowest free id
        server.query(f"INSERT INTO {db}.a VALUES (103, 'a')")
        after = _table_ids(server, str(server.query("SHOW MASTER STATUS")[0][0]))
        assert {before[f"{db}.a"], before[f"{db}.b"]} & {after[f"{db}.a"], after[f"{db}.b"]}, (before, after)
        assert before[f"{db}.a"] != after[f"{db}.a"] or before[f"{db}.b"] != after[f"{db}.b"], (before, after)

        cfg = write_config(tmp_path, server, broker, db, start={"file": str(file), "pos": int(pos)})
        settings = load_settings(cfg)

        def done(msgs: list[FlatMessage]) -> bool:
            return sum(len(m.data or []) for m in msgs if m.type == "INSERT") >= 6

        with running_tailer(settings):
            got = read_messages(broker, settings.kafka.topic.name, done)
        labelled = sorted((m.table, int(r["id"])) for _p, _o, m in got if m.type == "INSERT" for r in m.data or [])
        assert labelled == [("a", 101), ("a", 102), ("a", 103), ("b", 201), ("b", 202), ("b", 203)], labelled
    finally:
        server.stop()
