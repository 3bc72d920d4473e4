"""`cdc-repair diff` with a missing table names the side (SOURCE/TARGET), the table and the masked server, and
never talks about a config file it does not have. Found end to end: `error: pair 'diff': table m_db.nope not
found (check pairs[].source/target)` for a missing TARGET (and for SOURCE when --key is given)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def db(mariadb: MariaDBServer) -> Iterator[str]:
    name = f"d{uuid.uuid4().hex[:10]}"
    mariadb.query(f"CREATE DATABASE {name}")
    mariadb.query(f"CREATE TABLE {name}.t (id INT NOT NULL PRIMARY KEY, v INT)")
    yield name
    mariadb.query(f"DROP DATABASE {name}")


def _diff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc_repair", "diff", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


@pytest.mark.parametrize("side", ["SOURCE", "TARGET"])
@pytest.mark.parametrize("key", [[], ["--key", "id"]])
def test_a_missing_table_is_named_with_its_side(mariadb: MariaDBServer, db: str, side: str, key: list[str],
                                                tmp_path: Path) -> None:
    dsn = mariadb.dsn().to_url().rstrip("/")
    good, bad = f"{dsn}/{db}.t", f"{dsn}/{db}.nope"
    done = _diff(*((bad, good) if side == "SOURCE" else (good, bad)), *key, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {side}: table {db}.nope does not exist on mysql://root:***@"), lines[0]
    assert "pairs[" not in lines[0] and mariadb.password not in lines[0]
