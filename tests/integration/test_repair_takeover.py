"""Claims of a dead run: a re-run names the holder, takes over a dead run's claims, and repair_log misses nothing.

Real faults: the repairing process is frozen (SIGSTOP) and then killed (SIGKILL) mid-run; a run on another host
stops its heartbeat.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.repair.store import Filters, StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]
N = 3000


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def wait_for(what: str, cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(cfg), "repair", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_a_killed_run_is_named_then_taken_over_and_every_applied_change_is_logged(env: Env, tmp_path: Path) -> None:
    for start in range(1, N + 1, 1000):
        env.many(INSERT.format(t=env.src), [article(i) for i in range(start, start + 1000)])
    env.record(range(1, N + 1))
    cfg = env.write_config(tmp_path / "c.yaml", repair={"rate_limit_per_s": 600, "claim_timeout_s": 3600,
                                                        "dead_after_s": 3600})
    undo = f"SELECT COUNT(*) FROM {env.online}.undo_log"
    logged = f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log WHERE status = 'applied'"
    victim = subprocess.Popen([sys.executable, "-m", "cdc_repair", "--config", str(cfg), "repair", "--execute"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for("the first 500 logged repairs", lambda: env.sql(logged)[0][0] >= 500 and env.sql(undo)[0][0] >= 700)
        os.kill(victim.pid, signal.SIGSTOP)  # frozen mid-run: alive, holding its claims
        applied_by_victim = env.sql(undo)[0][0]
        assert env.sql(logged)[0][0] < applied_by_victim  # repair_log lags the applied changes

        held = cli(cfg, "--execute")
        out = held.stdout + held.stderr
        assert held.returncode == 2, out  # not "nothing to do", exit 0
        match = re.search(r"--take-over (run-[0-9A-Za-z-]+)", out)
        assert match is not None, out
        dead_run = match.group(1)
        assert f"pid {victim.pid}" in out and "claimed by run" in out
        assert env.sql(undo)[0][0] == applied_by_victim  # the held entries were left alone

        refused = cli(cfg, "--execute", "--take-over", dead_run)  # it is still alive on this host
        assert refused.returncode == 1 and f"pid {victim.pid}" in refused.stderr
        assert "Traceback" not in refused.stderr and env.sql(undo)[0][0] == applied_by_victim
    finally:
        victim.kill()  # SIGKILL: the run dies without a word to the state DB
        victim.wait(30)

    rerun = cli(cfg, "--execute")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "taking over" in rerun.stderr and dead_run in rerun.stderr
    led = env.sql(f"SELECT status, COUNT(*) FROM {env.prefix}_state.inconsistency GROUP BY status")
    assert led == [("repaired", N)]
    assert env.sql(undo)[0][0] == N  # each key written once: by the dead run or by the re-run
    assert env.sql(logged)[0][0] == N  # and every applied change is in repair_log
    by_dead = env.sql(f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log WHERE run_id = %s", (dead_run,))
    assert by_dead == [(applied_by_victim,)]  # under the run that applied it: `rollback RUN` undoes all of it
    assert [v for v in env.verdicts(range(1, N + 1)) if v.is_mismatch] == []


def test_a_run_on_another_host_is_taken_over_when_its_heartbeat_stops_or_when_told(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 21)])
    env.record(range(1, 21))
    state = env.settings.state.dsn
    store = StateStore(state)
    try:  # two runs on a host we cannot see: each claimed 10 entries, then its host went silent
        for name, ids in (("run-elsewhere-1", range(1, 11)), ("run-elsewhere-2", range(11, 21))):
            token = f"cli:{name}:x"
            store.register_run(name, token, "cli")
            pks = tuple(f'["{i}"]' for i in ids)
            assert len(store.claim(token, Filters(pks=pks), limit=100)) == 10
        env.sql(f"UPDATE {env.prefix}_state.repair_run SET host = 'gone-host', pid = 1")
        env.sql(f"UPDATE {env.prefix}_state.repair_run SET heartbeat_at = UTC_TIMESTAMP() - INTERVAL 1 HOUR "
                f"WHERE run_id = 'run-elsewhere-1'")
    finally:
        store.close()

    first = run_repair(env.settings, mode="execute")  # run 1's heartbeat is an hour old: dead; run 2 beats
    assert {r.pk for r in first.results if r.status == "repaired"} == {f'["{i}"]' for i in range(1, 11)}
    left = [r for r in first.results if r.status == "left"]
    assert len(left) == 10 and all("run-elsewhere-2" in r.reason and "--take-over" in r.reason for r in left)
    assert first.exit_code == 2

    second = run_repair(env.settings, mode="execute", take_over=("run-elsewhere-2",))  # the operator knows
    assert second.exit_code == 0 and second.count("repaired") == 10
    runs = env.sql(f"SELECT run_id, status FROM {env.prefix}_state.repair_run WHERE run_id LIKE 'run-elsewhere%' "
                   f"ORDER BY run_id")
    assert runs == [("run-elsewhere-1", "taken_over"), ("run-elsewhere-2", "taken_over")]
    assert [v for v in env.verdicts(range(1, 21)) if v.is_mismatch] == []


def test_rollback_of_a_run_that_died_before_logging_undoes_what_it_applied(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i, title=f"new {i}") for i in range(1, 6)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(1, 6)])
    before = {i: env.row(env.tgt, i) for i in range(1, 6)}
    env.record(range(1, 6))
    cfg = env.write_config(tmp_path / "c.yaml")
    crashed = subprocess.run([sys.executable, "-m", "cdc_repair_dev.crashing_cli", "after_row_commit",
                              "--config", str(cfg), "repair", "--execute"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert crashed.returncode == 86, crashed.stderr  # died right after the row commit: repair_log never heard
    assert env.sql(f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log") == [(0,)]
    assert env.row(env.tgt, 1)["title"] == "new 1"
    [(dead_run,)] = env.sql(f"SELECT run_id FROM {env.prefix}_state.repair_run")

    runner_out = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(cfg), "rollback", dead_run],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert runner_out.returncode == 0, runner_out.stdout + runner_out.stderr
    assert {i: env.row(env.tgt, i) for i in range(1, 6)} == before  # the undo log was the run's record
    assert env.sql(f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log WHERE run_id = %s AND status = "
                   f"'rolled_back'", (dead_run,)) == [(5,)]
