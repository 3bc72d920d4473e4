"""The byte-exact guarded statements (what --print shows and --execute runs) hold for every common column type:
FLOAT/DOUBLE, DECIMAL, DATETIME(6), case-insensitive text, TEXT, ENUM, BLOB, NULL vs '', emoji
(issue 11 items 6 and 7: --execute now runs the printed statements, so they must match rows of any type)."""

from __future__ import annotations

import datetime as dt
import decimal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_repair_support import Env, make_env

from cdc_repair.cli import cli
from cdc_repair.config import settings_from_mapping
from cdc_repair_dev.devservices.mariadb import MariaDBServer, find_binary

DDL = """CREATE TABLE {t} (
  id INT NOT NULL PRIMARY KEY, f FLOAT, d DOUBLE, n DECIMAL(10, 2), ts DATETIME(6),
  name VARCHAR(64) COLLATE utf8mb4_general_ci, body TEXT, kind ENUM('a', 'b'), raw BLOB
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
COLS = ("id", "f", "d", "n", "ts", "name", "body", "kind", "raw")
ROWS: list[tuple[Any, ...]] = [
    (1, 0.1, 0.30000000000000004, decimal.Decimal("1.50"), dt.datetime(2024, 5, 1, 10, 0, 0, 123456), "Alpha",
     "text one", "a", b"\x00\xff raw"),
    (2, 1.2345678, 1e20, decimal.Decimal("-3.00"), dt.datetime(2024, 5, 2), "Beta \U0001f680", "", "b", b""),
    (3, None, None, None, None, None, None, None, None),
    (4, -2.5e-7, 123456789.123456789, decimal.Decimal("0.01"), dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
     "gamma  ", "line\nbreak 'quoted' \\ back", "a", "é".encode()),
]


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    for table in (f"{e.author}.things", f"{e.online}.things"):
        e.sql(DDL.format(t=table))
    e.raw["pairs"] = [{"name": "things", "kind": "mirror",
                       "source": {"server": "author", "table": f"{e.author}.things"},
                       "target": {"server": "online", "table": f"{e.online}.things"}, "key": ["id"]}]
    e.settings = settings_from_mapping(e.raw)
    yield e
    e.drop()


def _insert(env: Env, table: str, rows: list[tuple[Any, ...]]) -> None:
    env.many(f"INSERT INTO {table} ({', '.join(COLS)}) VALUES ({', '.join(['%s'] * len(COLS))})", rows)


def _plant(env: Env) -> None:
    """Online: every row present but stale in every column (so each guard reads every type), plus an orphan;
    source rows 5 and 6 missing online."""
    src, tgt = f"{env.author}.things", f"{env.online}.things"
    _insert(env, src, [*ROWS, (5, *ROWS[0][1:]), (6, *ROWS[1][1:])])
    _insert(env, tgt, [*ROWS, (9, *ROWS[3][1:])])
    env.sql(f"UPDATE {src} SET name = CONCAT(IFNULL(name, ''), '!'), body = 'new body'")


def _left(env: Env) -> int:
    from cdc_repair.validate.full_scan import run_full_scan

    return run_full_scan(env.settings).differences


def _ledger(env: Env) -> None:
    from cdc_repair.db import mysql
    from cdc_repair.state import ledger
    from cdc_repair.state.engine import state_engine
    from cdc_repair.validate.check import check

    conn = mysql.connect(env.server.dsn())
    try:
        verdicts = check(env.settings.pairs[0], [(i,) for i in (1, 2, 3, 4, 5, 6, 9)], conn, conn)
    finally:
        conn.close()
    engine = state_engine(env.settings.state.dsn)
    try:
        ledger.record_verdicts(engine, verdicts, "cli")
    finally:
        engine.dispose()


def test_execute_repairs_every_type(env: Env, tmp_path: Path) -> None:
    _plant(env)
    _ledger(env)
    cfg = env.write_config(tmp_path / "c.yaml")
    done = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--execute"])
    assert done.exit_code == 0, done.output
    assert "7 repaired" in done.stderr
    assert _left(env) == 0


def test_printed_sql_repairs_every_type_in_the_mariadb_client(env: Env, tmp_path: Path) -> None:
    _plant(env)
    _ledger(env)
    cfg = env.write_config(tmp_path / "c.yaml")
    printed = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print"])
    assert printed.exit_code == 2, printed.output
    dsn = env.server.dsn()
    loaded = subprocess.run([find_binary("mariadb") or "mariadb", "--no-defaults", "-h", dsn.host, "-P",
                             str(dsn.port), "-u", dsn.user, f"-p{dsn.password}", "--batch", "-vv"],
                            input=printed.stdout, capture_output=True, text=True, timeout=60, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.count("1 row affected") == 7, loaded.stdout[-3000:]
    assert _left(env) == 0
