"""`cdc-repair diff SOURCE TARGET`: a read-only one-off compare of two tables on two real servers.

No config file, no Kafka, no state database: the users are read-only, and afterwards neither server has a new
schema or table. The printed SQL, run by the stock `mariadb` client, makes the target match.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_repair_dev.devservices.mariadb import MariaDBServer

DDL = """CREATE TABLE {t} (
  id BIGINT NOT NULL PRIMARY KEY, title VARCHAR(200) COLLATE utf8mb4_general_ci, note VARCHAR(50) NULL,
  body BLOB, price DECIMAL(10,2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
INSERT = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s)"


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    server = MariaDBServer(tmp_path_factory.mktemp("diff-target") / "db", server_id=41).start()
    yield server
    server.stop()


def _rows(n: int) -> list[tuple[object, ...]]:
    return [(i, f"Title {i}", f"note {i}", f"body {i}".encode() * 3, f"{i}.50") for i in range(1, n + 1)]


@pytest.fixture
def tables(mariadb: MariaDBServer, second: MariaDBServer) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    src, tgt = f"dsrc_{tag}", f"dtgt_{tag}"
    mariadb.query(f"CREATE DATABASE {src}")
    second.query(f"CREATE DATABASE {tgt}")
    mariadb.query(DDL.format(t=f"{src}.articles"))
    second.query(DDL.format(t=f"{tgt}.articles"))
    rows = _rows(3000)
    mariadb.execute_many(INSERT.format(t=f"{src}.articles"), rows)
    second.execute_many(INSERT.format(t=f"{tgt}.articles"), rows)
    t = f"{tgt}.articles"
    second.query(f"DELETE FROM {t} WHERE id IN (7, 1500)")                         # missing in target
    second.query(f"INSERT INTO {t} VALUES (5000, 'orphan', NULL, NULL, 1.00)")      # extra in target
    second.query(f"INSERT INTO {t} VALUES (-5, 'below range', NULL, NULL, 1.00)")   # extra, below source's range
    second.query(f"UPDATE {t} SET title = 'TITLE 10' WHERE id = 10")               # case under a _ci collation
    second.query(f"UPDATE {t} SET title = 'Title 11 ' WHERE id = 11")              # trailing space
    second.query(f"UPDATE {t} SET note = NULL WHERE id = 12")                      # NULL vs a value
    mariadb.query(f"UPDATE {src}.articles SET note = '' WHERE id = 13")
    second.query(f"UPDATE {t} SET note = NULL WHERE id = 13")                      # '' vs NULL
    second.query(f"UPDATE {t} SET body = CONCAT(body, 'x') WHERE id = 2999")       # last BLOB byte
    for server, host_db in ((mariadb, src), (second, tgt)):
        server.query(f"CREATE USER IF NOT EXISTS 'ro_{tag}'@'127.0.0.1' IDENTIFIED BY 'ro-pw-{tag}'")
        server.query(f"GRANT SELECT ON {host_db}.* TO 'ro_{tag}'@'127.0.0.1'")
    yield {"source": f"mysql://ro_{tag}:ro-pw-{tag}@127.0.0.1:{mariadb.port}/{src}.articles",
           "target": f"mysql://ro_{tag}:ro-pw-{tag}@127.0.0.1:{second.port}/{tgt}.articles",
           "target_db": tgt, "source_db": src, "password": f"ro-pw-{tag}"}
    for server, db in ((mariadb, src), (second, tgt)):
        server.query(f"DROP DATABASE {db}")
        server.query(f"DROP USER IF EXISTS 'ro_{tag}'@'127.0.0.1'")


EXPECTED = {(7, "missing_in_target"), (1500, "missing_in_target"), (5000, "extra_in_target"),
            (-5, "extra_in_target"), (10, "different"), (11, "different"), (12, "different"), (13, "different"),
            (2999, "different")}


def diff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # run from an empty folder: no config file is there to be picked up
    return subprocess.run([sys.executable, "-m", "cdc_repair", "diff", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


def _schemas(server: MariaDBServer) -> set[str]:
    return {str(r[0]) for r in server.query("SHOW DATABASES")}


def test_diff_finds_every_planted_difference_read_only(tables: dict[str, str], mariadb: MariaDBServer,
                                                       second: MariaDBServer, tmp_path: Path) -> None:
    before = (_schemas(mariadb), _schemas(second))
    done = diff(tables["source"], tables["target"], "--json", "--chunk-size", "100", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    doc = json.loads(done.stdout)
    assert {(f["key"][0], f["kind"]) for f in doc["found"]} == EXPECTED
    assert doc["differences"] == len(EXPECTED)
    assert (_schemas(mariadb), _schemas(second)) == before  # nothing created: no state schema, no undo_log
    assert tables["password"] not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    text = diff(tables["source"], tables["target"], "--limit", "3", cwd=tmp_path)
    assert text.returncode == 2
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("… 6 more")
    assert "9 difference(s)" in text.stderr and "rows" in text.stderr  # the summary and a progress line


def test_printed_sql_makes_the_target_match(tables: dict[str, str], second: MariaDBServer, tmp_path: Path) -> None:
    done = diff(tables["source"], tables["target"], "--print", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    sql = done.stdout  # as documented: the whole output piped to the client (the differences are comments)
    client = shutil.which("mariadb") or shutil.which("mysql")
    assert client, "the mariadb client is installed with the server"
    applied = subprocess.run([client, "-uroot", f"-p{second.password}", "-h127.0.0.1", f"-P{second.port}",
                              tables["target_db"]], input=sql, capture_output=True, text=True, timeout=120,
                             check=False)
    assert applied.returncode == 0, applied.stderr
    again = diff(tables["source"], tables["target"], "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["differences"] == 0


def test_bad_arguments_are_one_line(tables: dict[str, str], tmp_path: Path) -> None:
    no_table = tables["target"].rsplit("/", 1)[0] + "/" + tables["target_db"]
    done = diff(tables["source"], no_table, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: TARGET: the DSN must name a table as /database.table (e.g. mysql://user@host:3306/"
        f"webook_author.articles), got '/{tables['target_db']}'"]
    missing = diff(tables["source"], tables["target"].replace("articles", "nope"), "--key", "id", cwd=tmp_path)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
