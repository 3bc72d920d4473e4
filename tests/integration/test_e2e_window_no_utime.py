"""`validate --since` (and the daemon's window_scan job) with a pair whose tables lack the default `utime`
column (a mirror pair that leaves `utime_column` unset, as config/example.yaml's users_mirror): the pair is
skipped with a line naming the column and the fix, and the other pairs are still scanned. Found end to end:
`error: MySQL error 1054: Unknown column 'utime' in 'WHERE'`, exit 1, and no pair after it was checked."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.cli import cli
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    for table in (f"{e.author}.things", f"{e.online}.things"):
        e.sql(f"CREATE TABLE {table} (id INT NOT NULL PRIMARY KEY, v INT) ENGINE=InnoDB")
    mirror = {"name": "things", "kind": "mirror", "source": {"server": "author", "table": f"{e.author}.things"},
              "target": {"server": "online", "table": f"{e.online}.things"}, "key": ["id"]}
    e.raw["pairs"] = [mirror, *e.raw["pairs"]]
    yield e
    e.drop()


def test_window_scan_skips_a_pair_without_the_utime_column(env: Env, tmp_path: Path) -> None:
    now = int(time.time())
    env.many(INSERT.format(t=env.src), [article(1, utime=now)])  # published, missing online
    cfg = env.write_config(tmp_path / "c.yaml")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
    done = CliRunner().invoke(cli, ["--config", str(cfg), "validate", "--since", since])
    assert "Traceback" not in done.output and "1054" not in done.output, done.output
    assert done.exit_code == 2, done.output  # the publish pair after the mirror pair was scanned
    assert "missing_in_target" in done.output, done.output
    assert f"skipped: {env.author}.things has no column 'utime'" in done.output, done.output
