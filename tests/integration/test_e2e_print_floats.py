"""`repair --print` piped into the mariadb client repairs rows whose FLOAT/DOUBLE values are whole numbers
(found end to end: a guard `CONCAT(d) <=> CONCAT(15.0)` compared '15' with the DECIMAL literal's '15.0', so the
printed UPDATE/DELETE affected 0 rows while `--execute`, whose driver sends `15.0e0`, repaired them)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_repair_support import Env, make_env

from cdc_repair.cli import cli
from cdc_repair.config import settings_from_mapping
from cdc_repair_dev.devservices.mariadb import MariaDBServer, find_binary

DDL = "CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, f FLOAT, d DOUBLE, name VARCHAR(20)) ENGINE=InnoDB"


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    for table in (f"{e.author}.nums", f"{e.online}.nums"):
        e.sql(DDL.format(t=table))
    e.raw["pairs"] = [{"name": "nums", "kind": "mirror",
                       "source": {"server": "author", "table": f"{e.author}.nums"},
                       "target": {"server": "online", "table": f"{e.online}.nums"}, "key": ["id"]}]
    e.settings = settings_from_mapping(e.raw)
    yield e
    e.drop()


def test_printed_guards_match_whole_floats_in_the_mariadb_client(env: Env, tmp_path: Path) -> None:
    env.many(f"INSERT INTO {env.author}.nums VALUES (%s, %s, %s, %s)", [(1, 2.5, 15.5, "a"), (2, 0.5, 7.25, "b")])
    # online: stale whole-number floats on key 1, zeros on key 2, an orphan with whole floats
    env.many(f"INSERT INTO {env.online}.nums VALUES (%s, %s, %s, %s)",
             [(1, 2.0, 15.0, "a"), (2, 0.0, 0.0, "b"), (3, 4.0, -3.0, "c")])
    cfg = env.write_config(tmp_path / "c.yaml")
    found = CliRunner().invoke(cli, ["--config", str(cfg), "validate", "--full"])
    assert found.exit_code == 2, found.output
    printed = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print"])
    assert printed.exit_code == 2, printed.output
    dsn = env.server.dsn()
    loaded = subprocess.run([find_binary("mariadb") or "mariadb", "--no-defaults", "-h", dsn.host, "-P",
                             str(dsn.port), "-u", dsn.user, f"-p{dsn.password}", "--batch", "-vv"],
                            input=printed.stdout, capture_output=True, text=True, timeout=60, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.count("1 row affected") == 3, printed.stdout
    again = CliRunner().invoke(cli, ["--config", str(cfg), "validate", "--full"])
    assert again.exit_code == 0, again.output
