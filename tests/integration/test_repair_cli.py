"""`cdc-repair repair` end to end: full scan → repair (dry-run, --print, --execute) → full scan clean; exit codes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.cli import cli
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0,
                                     "full_scan": {"chunk_rows": 50}})
    yield e
    e.drop()


def plant(env: Env, n: int = 300) -> None:
    """n published articles online; then 10 missing, 10 different, 10 withdrawn, 10 orphans, 10 drafts."""
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, n + 1)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(1, n + 1)])
    env.sql(f"DELETE FROM {env.tgt} WHERE id BETWEEN 1 AND 10")
    env.sql(f"UPDATE {env.src} SET title = CONCAT(title, ' v2'), content = 'new body' WHERE id BETWEEN 11 AND 20")
    env.sql(f"UPDATE {env.src} SET status = 3 WHERE id BETWEEN 21 AND 30")
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(n + 1, n + 11)])
    env.sql(f"UPDATE {env.src} SET status = 1, title = 'draft' WHERE id BETWEEN 31 AND 40")


def test_full_scan_repair_full_scan_is_clean(env: Env, tmp_path: Path) -> None:
    plant(env)
    first = run_full_scan(env.settings)
    assert first.differences == 40
    cfg = env.write_config(tmp_path / "c.yaml")
    runner = CliRunner()

    dry = runner.invoke(cli, ["--config", str(cfg), "repair"])
    assert dry.exit_code == 2, dry.output
    assert "dry run: nothing written" in dry.stderr and dry.stdout.count("\tplanned\t") == 40

    printed = runner.invoke(cli, ["--config", str(cfg), "repair", "--print", "--pair", "articles"])
    assert printed.exit_code == 2
    assert printed.stdout.count("\nINSERT INTO") + printed.stdout.startswith("INSERT INTO") == 10
    assert printed.stdout.count("DELETE FROM") == 10 and printed.stdout.count("UPDATE `") == 20

    done = runner.invoke(cli, ["--config", str(cfg), "--json", "repair", "--execute"])
    assert done.exit_code == 0, done.output
    doc = orjson.loads(done.stdout)
    assert doc["summary"] == {"repaired": 40} and doc["differences_left"] == 0
    assert all(len(r["repair_ids"]) == 1 for r in doc["results"])

    time.sleep(0.1)
    assert run_full_scan(env.settings).differences == 0
    assert {e["status"] for e in env.ledger().values()} == {"repaired"}
    nothing = runner.invoke(cli, ["--config", str(cfg), "repair", "--execute"])
    assert nothing.exit_code == 0 and "nothing to do" in nothing.stderr

    # and the whole run can be undone: the planted differences are back
    undone = runner.invoke(cli, ["--config", str(cfg), "--json", "rollback", doc["run_id"]])
    assert undone.exit_code == 0, undone.output
    assert {i["outcome"] for i in orjson.loads(undone.stdout)["items"]} == {"undone"}
    assert run_full_scan(env.settings).differences == 40


def test_bad_key_and_unknown_pair_are_one_line_errors(env: Env, tmp_path: Path) -> None:
    cfg = env.write_config(tmp_path / "c.yaml")
    runner = CliRunner()
    out = runner.invoke(cli, ["--config", str(cfg), "repair", "--pair", "nope"])
    assert out.exit_code == 1 and "no pair named 'nope'" in out.output
    out = runner.invoke(cli, ["--config", str(cfg), "repair", "--pair", "articles", "--key", "[1"])
    assert out.exit_code == 1 and "JSON array" in out.output
    out = runner.invoke(cli, ["--config", str(cfg), "repair", "--pair", "articles", "--key", "[1, 2]"])
    assert out.exit_code == 1 and "has 2 values" in out.output


def test_rate_limit_paces_repairs(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 31)])
    env.record(range(1, 31))
    cfg = env.write_config(tmp_path / "c.yaml", repair={"rate_limit_per_s": 20, "batch_size": 10})
    t0 = time.monotonic()
    out = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--execute"])
    elapsed = time.monotonic() - t0
    assert out.exit_code == 0, out.output
    assert elapsed >= 0.95  # 30 repairs at 20/s: batches start at 0, 0.5 and 1.0 s


def test_unreachable_state_db_is_a_one_line_error_without_the_password(env: Env, tmp_path: Path) -> None:
    cfg = env.write_config(tmp_path / "c.yaml", state={"dsn": "mysql://root:s3cret@127.0.0.1:1/cdc_state"})
    for argv in (["repair"], ["repair", "--execute"], ["rollback", "rp-x"]):
        out = CliRunner().invoke(cli, ["--config", str(cfg), *argv])
        assert out.exit_code == 1, out.output
        lines = [ln for ln in out.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "s3cret" not in out.output
        assert lines[0].startswith(("error: state DB", "error: state database"))


def test_repair_shows_progress_on_stderr_and_keeps_stdout_clean(env: Env, tmp_path: Path) -> None:
    """Not on a terminal, progress comes as plain lines on stderr (keys done of total); stdout stays the report."""
    plant(env)
    run_full_scan(env.settings)
    cfg = env.write_config(tmp_path / "c.yaml")
    done = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--execute"])
    assert done.exit_code == 0, done.output
    assert "articles: 40/40 keys (100%)" in done.stderr
    assert "keys (100%)" not in done.stdout
    quiet = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "repair", "--execute"])
    assert "keys (" not in quiet.stderr  # --json: machine output only
