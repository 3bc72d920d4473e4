"""Operator mistakes and outages give one line naming the problem and the fix: never a traceback (real processes)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    yield e
    e.drop()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=180, check=False)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith(("{", "20"))]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def test_full_validation_with_the_state_database_down(env: Env, tmp_path: Path) -> None:
    cfg = env.write_config(tmp_path / "c.yaml", state={"dsn": "mysql://root:Pw-9x!q@127.0.0.1:1/cdc_state"})
    done = cli(cfg, "validate", "--full")
    assert done.returncode == 1
    line = one_line(done)
    assert "state database mysql://root:***@127.0.0.1:1/cdc_state" in line and "Pw-9x!q" not in done.stderr


def test_window_validation_of_a_missing_table(env: Env, tmp_path: Path) -> None:
    env.sql(f"DROP TABLE {env.tgt}")
    cfg = env.write_config(tmp_path / "c.yaml")
    done = cli(cfg, "validate", "--since", "1h")
    assert done.returncode == 1
    line = one_line(done)
    assert "1146" in line and "published_articles" in line and "check-config --connect" in line


def test_repair_without_undo_log_and_without_create_grant(env: Env, mariadb: MariaDBServer, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 6)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(1, 5)])
    user = f"{env.prefix}_rep"
    env.sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'rep-pw-1'")
    env.sql(f"GRANT SELECT ON {env.author}.* TO '{user}'@'127.0.0.1'")
    env.sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {env.tgt} TO '{user}'@'127.0.0.1'")
    env.sql(f"GRANT ALL ON {env.prefix}_state.* TO '{user}'@'127.0.0.1'")
    try:
        run_full_scan(env.settings)
        dsn = f"mysql://{user}:rep-pw-1@127.0.0.1:{mariadb.port}/"
        cfg = env.write_config(tmp_path / "c.yaml", servers={"author": {"dsn": dsn}, "online": {"dsn": dsn}})
        done = cli(cfg, "repair", "--execute")
        assert done.returncode in (1, 2)
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert f"cannot create the undo log {env.online}.undo_log" in done.stderr
        assert f"GRANT CREATE ON {env.online}.undo_log" in done.stderr
        assert env.sql(f"SELECT COUNT(*) FROM {env.tgt}")[0][0] == 4, "nothing may be written without an undo log"
    finally:
        env.sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
