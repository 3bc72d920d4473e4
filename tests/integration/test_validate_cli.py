"""`cdc-repair validate` end to end (CLI process) and the window scan."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_validate_support import ART_INSERT, Env, article, make_env

from cdc_repair.validate.window_scan import run_window_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, extra={"validator": {"settle_delay_s": 0, "recheck_delay_s": 0.05, "rechecks": 1}})
    yield e
    e.drop()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def seed(env: Env) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 301)])
    env.many(ART_INSERT.format(t=tgt), [article(i) for i in range(1, 301) if i != 7])


def test_cli_full_scan_json_and_exit_codes(env: Env, tmp_path: Path) -> None:
    seed(env)
    config = env.write_config(tmp_path / "c.yaml")
    done = cli(config, "--json", "validate", "--full", "--pair", "articles")
    assert done.returncode == 2, done.stderr
    doc = json.loads(done.stdout)
    assert doc["differences"] == 1
    assert doc["pairs"][0]["found"] == [{"key": [7], "kind": "missing_in_target", "columns": []}]
    assert doc["pairs"][0]["rows"] == 300

    env.sql(f"INSERT INTO {env.online}.published_articles SELECT * FROM {env.author}.articles WHERE id=7")
    done = cli(config, "validate", "--pair", "articles")
    assert done.returncode == 0, done.stderr
    assert "no differences" in done.stdout and "articles" in done.stdout

    done = cli(config, "validate", "--pair", "nope")
    assert done.returncode == 1 and "no pair named 'nope'" in done.stderr
    done = cli(config, "validate", "--since", "yesterday-ish")
    assert done.returncode == 1 and "is not a time" in done.stderr  # a usage error: 1, never 2 (differences)


def test_cli_key_mode_text_output(env: Env, tmp_path: Path) -> None:
    seed(env)
    config = env.write_config(tmp_path / "c.yaml")
    done = cli(config, "validate", "--key", "7", "--key", "8", "--pair", "articles")
    assert done.returncode == 2, done.stderr
    assert "key=7: missing_in_target" in done.stdout and "key=8" not in done.stdout


def test_window_scan_sees_recent_changes_on_both_sides(env: Env) -> None:
    seed(env)
    now_ms = int(time.time() * 1000)
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    # recent: a changed source row, a recent orphan online; old (before the window): a stale row
    env.sql(f"UPDATE {src} SET title='new', utime=%s WHERE id=10", (now_ms,))
    env.sql(f"UPDATE {src} SET title='old change', utime=5 WHERE id=11")
    env.many(ART_INSERT.format(t=tgt), [article(900, utime=now_ms)])
    report = run_window_scan(env.settings, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), pair_name="articles")
    got = {int(v.key[0]): v.kind for v in report.pairs[0].confirmed}
    assert got == {10: "different", 900: "extra_in_target"}  # 7 and 11 are outside the window
    assert report.pairs[0].keys_checked == 2
