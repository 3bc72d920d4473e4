"""A key that is not unique never destroys rows, and `--print` shows exactly what `--execute` runs, with guards
as exact as `--execute`'s (issue 11 items 6 and 7): real MariaDB, the real `mariadb` client for printed SQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.cli import cli
from cdc_repair.db import mysql
from cdc_repair.repair import executor
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import Op, RepairAction, Side
from cdc_repair.repair.executor import Applied, Failed, RowServer, apply_batch
from cdc_repair_dev.devservices.mariadb import MariaDBServer, find_binary


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    yield e
    e.drop()


def _no_unique_key(env: Env) -> None:
    """The online table loses its primary key (an index on id is left, as in a hand-made copy)."""
    env.sql(f"ALTER TABLE {env.tgt} DROP PRIMARY KEY, ADD KEY idx_id (id)")


def _online(env: Env, i: int) -> list[tuple[Any, ...]]:
    return sorted(env.sql(f"SELECT id, title, status FROM {env.tgt} WHERE id = %s", (i,)))


def _undo_count(env: Env) -> int:
    got = env.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'undo_log'",
                  (env.online,))
    if not got[0][0]:
        return 0
    return int(env.sql(f"SELECT COUNT(*) FROM {env.online}.undo_log")[0][0])


def _plant_duplicates(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="new"), article(2, title="new 2")])
    env.many(INSERT.format(t=env.tgt), [article(1, title="old a"), article(1, title="old b"), article(2)])
    env.record([1, 2])


def test_non_unique_key_is_refused_by_every_command(env: Env, tmp_path: Path) -> None:
    _no_unique_key(env)
    _plant_duplicates(env)
    before = _online(env, 1)
    cfg = env.write_config(tmp_path / "c.yaml")
    runner = CliRunner()
    want = f"pairs[0].target.table: key (id) of {env.tgt} is not a PRIMARY KEY or a UNIQUE key of NOT NULL columns"
    for args in (["repair", "--execute"], ["repair", "--print"], ["repair"], ["validate", "--full"],
                 ["validate", "--key", "1"], ["check-config", "--connect"], ["run"]):
        out = runner.invoke(cli, ["--config", str(cfg), *args])
        assert out.exit_code == 1, (args, out.output)
        assert want in out.output, (args, out.output)
        assert "Traceback" not in out.output
    assert _online(env, 1) == before
    assert _undo_count(env) == 0


def _action(env: Env, i: int, op: Op, observed: dict[str, Any] | None, **values: Any) -> RepairAction:
    return RepairAction(pair="articles", pk=f'["{i}"]', key=(("id", i),), side=Side.TARGET, table=env.tgt, op=op,
                        label="t", values=values, observed=observed)


def _observed(env: Env, i: int, title: str) -> dict[str, Any]:
    got = mysql.fetch_dicts(mysql.connect(env.server.dsn()), rsql.select_by_keys(env.tgt, ["id"], [[i]]))
    return next(r for r in got if r["title"] == title)


@pytest.mark.parametrize("op", [Op.UPDATE, Op.DELETE])
def test_executor_writes_nothing_when_a_key_matches_two_rows(env: Env, op: Op) -> None:
    """Even past the start-up check (a key made non-unique later), a write touching more than one row per key is
    rolled back: both rows stay, no undo record, the key fails for good (an operator must look)."""
    _no_unique_key(env)
    env.many(INSERT.format(t=env.tgt), [article(1), article(1), article(2), article(3, title="x")])
    same = _observed(env, 1, "title 1")
    actions = [_action(env, 1, op, same, title="new"), _action(env, 3, Op.UPDATE, _observed(env, 3, "x"), title="y")]
    server = RowServer("online", env.server.dsn())
    try:
        out = apply_batch(server, actions, ["rp-a", "rp-b"])
    finally:
        server.close()
    failed = [o for o in out if isinstance(o, Failed)]
    assert [o.action.pk for o in failed] == ['["1"]']
    assert "2 rows" in failed[0].error and not failed[0].transient and failed[0].park
    assert [o.action.pk for o in out if isinstance(o, Applied)] == ['["3"]']  # the other key of the batch is fine
    assert _online(env, 1) == [(1, "title 1", 2), (1, "title 1", 2)]
    assert _online(env, 3) == [(3, "y", 2)]
    assert _undo_count(env) == 1


def test_daemon_parks_a_key_that_became_non_unique_after_start(env: Env) -> None:
    """The repair stage (no start-up check between passes): a duplicate key is parked at once, nothing written."""
    from cdc_repair.repair.worker import RepairWorker

    _no_unique_key(env)  # e.g. altered after the daemon started: only the write path can notice
    _plant_duplicates(env)
    before = _online(env, 1)
    worker = RepairWorker(env.settings)
    try:
        stats = worker.run_due(100)
    finally:
        worker.close()
    assert stats.claimed == 2 and stats.repaired == 1 and stats.parked == 1
    ledger = env.ledger()
    assert ledger['["1"]']["status"] == "failed" and "not unique" in ledger['["1"]']["last_error"]
    assert ledger['["2"]']["status"] == "repaired"
    assert _online(env, 1) == before
    assert _undo_count(env) == 1  # key 2 only


def test_print_shows_the_statements_execute_runs(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 9)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(3, 9)] + [article(20)])
    env.sql(f"UPDATE {env.src} SET title = 'new', content = 'new body' WHERE id IN (3, 4)")
    env.sql(f"UPDATE {env.src} SET status = 3 WHERE id = 5")
    env.record([*range(1, 9), 20])
    cfg = env.write_config(tmp_path / "c.yaml")
    printed = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "repair", "--print"])
    assert printed.exit_code == 2, printed.output
    shown = sorted(s for r in orjson.loads(printed.stdout)["results"] for s in r["sql"])
    assert len(shown) == 6  # 2 missing, 2 different, 1 withdrawn, 1 orphan

    ran: list[str] = []
    real_one, real_each = mysql.execute, mysql.execute_each

    def record(stmt: Any) -> None:
        if "`published_articles`" in stmt.sql and "undo_log" not in stmt.sql and not stmt.sql.startswith("SELECT"):
            ran.append(rsql.render(stmt))

    def spy_one(conn: mysql.Connection, stmt: Any) -> int:
        record(stmt)
        return real_one(conn, stmt)

    def spy_each(conn: mysql.Connection, stmts: Any) -> list[int]:
        for stmt in stmts:
            record(stmt)
        return real_each(conn, stmts)

    monkeypatch.setattr(executor.mysql, "execute", spy_one)
    monkeypatch.setattr(executor.mysql, "execute_each", spy_each)
    done = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "repair", "--execute"])
    assert done.exit_code == 0, done.output
    assert sorted(ran) == shown


def _client(env: Env, sql: str) -> subprocess.CompletedProcess[str]:
    client = find_binary("mariadb") or find_binary("mysql") or "mariadb"
    dsn = env.server.dsn()
    return subprocess.run([client, "--no-defaults", "-h", dsn.host, "-P", str(dsn.port), "-u", dsn.user,
                           f"-p{dsn.password}", "--batch"], input=sql, capture_output=True, text=True, timeout=60,
                          check=False)


def test_printed_sql_guards_bytes_and_loads_emoji_in_the_mariadb_client(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="Fresh title"), article(2, title="Rocket \U0001f680 launch")])
    env.many(INSERT.format(t=env.tgt), [article(1, title="Stale title")])
    env.record([1, 2])
    cfg = env.write_config(tmp_path / "c.yaml")
    printed = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print"])
    assert printed.exit_code == 2, printed.output
    assert printed.stdout.startswith("SET NAMES utf8mb4;\n")
    # after printing, an author changes the online title in a way the column collation cannot see
    env.sql(f"UPDATE {env.tgt} SET title = 'STALE TITLE   ' WHERE id = 1")

    loaded = _client(env, printed.stdout)
    assert env.row(env.tgt, 1)["title"] == "STALE TITLE   "  # the guard refused: not overwritten
    assert loaded.returncode == 0, loaded.stderr
    assert env.row(env.tgt, 2)["title"] == "Rocket \U0001f680 launch"  # the emoji arrived intact
