"""A daemon's repair worker killed mid-pass: its claims go to another worker after `repair.dead_after_s`.

Before, a daemon pass claimed with an unregistered token, so its claims waited out `claim_timeout_s` (300 s by
default) while the entries stayed `repairing` and the rows unrepaired (seen after a state-database restart in a
soak run). Now each worker is a registered run with a heartbeat; the kill -9 here is real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.config import load_settings
from cdc_repair.repair.worker import RepairWorker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]

_SLOW_PASS = """
import sys
from cdc_repair.config import load_settings
from cdc_repair.repair.worker import RepairWorker
worker = RepairWorker(load_settings(sys.argv[1]), worker_id="doomed")
worker.run_due(100)
"""


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    # claim_timeout_s far away: only the heartbeat can free the claims within the test
    e = make_env(mariadb, repair={"claim_timeout_s": 3600, "dead_after_s": 2, "rate_limit_per_s": 1,
                                  "batch_size": 2})
    yield e
    e.drop()


def test_claims_of_a_killed_daemon_worker_are_taken_over_after_dead_after_s(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 21)])
    env.record(range(1, 21))
    cfg = env.write_config(tmp_path / "c.yaml")
    doomed = subprocess.Popen([sys.executable, "-c", _SLOW_PASS, str(cfg)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(e["status"] == "repairing" for e in env.ledger().values()):
            time.sleep(0.1)
        if not any(e["status"] == "repairing" for e in env.ledger().values()):
            doomed.kill()
            out = doomed.communicate(timeout=10)[0].decode(errors="replace")
            raise AssertionError(f"the pass never claimed: {env.ledger()} {out[-3000:]}")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    held = [e for e in env.ledger().values() if e["status"] == "repairing"]
    assert held, "the killed pass held claims"

    slow = load_settings(cfg)
    fast = slow.model_copy(update={"repair": slow.repair.model_copy(update={"rate_limit_per_s": None,
                                                                             "batch_size": 100})})
    rescuer = RepairWorker(fast, worker_id="rescuer")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(e["status"] != "repaired" for e in env.ledger().values()):
            rescuer.run_due(100)
            time.sleep(0.5)
    finally:
        rescuer.close()
    assert {e["status"] for e in env.ledger().values()} == {"repaired"}
    per_key = env.sql(f"SELECT pk, COUNT(*) FROM {env.online}.undo_log GROUP BY pk HAVING COUNT(*) > 1")
    assert per_key == []  # what the killed pass applied was not applied again
