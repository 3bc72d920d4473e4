"""CLI flags of `cdc-repair repair` (issue 11 item 19): --json after the subcommand, --print --execute together,
usage errors never exit 2 (2 means differences), and a dry run prints no run id that rollback would reject."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.cli import cli
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    yield e
    e.drop()


def plant(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 7)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(2, 7)] + [article(9)])
    env.sql(f"UPDATE {env.src} SET title = 'new title' WHERE id IN (2, 3)")
    env.record([*range(1, 7), 9])


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point as a user runs it (a real process, real exit code)."""
    return subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_json_works_after_the_subcommand(env: Env, tmp_path: Path) -> None:
    plant(env)
    cfg = env.write_config(tmp_path / "c.yaml")
    after = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--json"])
    assert after.exit_code == 2, after.output
    doc = orjson.loads(after.stdout)
    assert doc["mode"] == "dry-run" and doc["summary"] == {"planned": 4}
    checked = CliRunner().invoke(cli, ["--config", str(cfg), "check-config", "--json"])
    assert checked.exit_code == 0 and orjson.loads(checked.stdout)["ok"] is True


def test_print_and_execute_together_prints_what_it_executes(env: Env, tmp_path: Path) -> None:
    plant(env)
    cfg = env.write_config(tmp_path / "c.yaml")
    planned = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print"])
    assert planned.exit_code == 2
    both = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print", "--execute"])
    assert both.exit_code == 0, both.output
    assert both.stdout.startswith("SET NAMES utf8mb4;\n")
    assert both.stdout == planned.stdout  # the statements shown are the statements that ran
    assert {e["status"] for e in env.ledger().values()} == {"repaired"}
    assert env.row(env.tgt, 1) is not None and env.row(env.tgt, 9) is None
    assert env.row(env.tgt, 2)["title"] == "new title"
    again = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--print"])
    assert again.exit_code == 0 and again.stdout == "SET NAMES utf8mb4;\n"


@pytest.mark.parametrize("args", [["repair", "--bogus"], ["repair", "--kind", "nope"],
                                  ["repair", "--dry-run", "--execute"], ["validate", "--since", "yesterday-ish"],
                                  ["rollback"], ["no-such-command"]])
def test_usage_errors_exit_1_never_2(env: Env, tmp_path: Path, args: list[str]) -> None:
    cfg = env.write_config(tmp_path / "c.yaml")
    done = run(cfg, *args)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_a_dry_run_prints_no_run_id_that_rollback_rejects(env: Env, tmp_path: Path) -> None:
    plant(env)
    cfg = env.write_config(tmp_path / "c.yaml")
    for args in (["repair"], ["repair", "--print"], ["--json", "repair"]):
        out = CliRunner().invoke(cli, ["--config", str(cfg), *args])
        assert out.exit_code == 2, out.output
        for run_id in re.findall(r"run-[0-9T]+-[0-9a-f]+", out.output):  # any id shown must be one rollback knows
            assert CliRunner().invoke(cli, ["--config", str(cfg), "rollback", "--dry-run", run_id]).exit_code == 0
    assert orjson.loads(CliRunner().invoke(cli, ["--config", str(cfg), "--json", "repair"]).stdout)["run_id"] is None

    done = CliRunner().invoke(cli, ["--config", str(cfg), "repair", "--execute"])
    assert done.exit_code == 0
    shown = re.findall(r"run-[0-9T]+-[0-9a-f]+", done.stderr)
    assert shown  # an executed run names its id, and rollback accepts it
    undo = CliRunner().invoke(cli, ["--config", str(cfg), "rollback", "--dry-run", shown[0]])
    assert undo.exit_code == 0, undo.output
