"""Claims, retries with backoff, parking, the worker loop, and a repairer killed mid-repair (real MariaDB)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.config import settings_from_mapping
from cdc_repair.errors import UnreachableError
from cdc_repair.metrics import ERRORS, REPAIRS
from cdc_repair.model.keys import pk_string
from cdc_repair.repair.store import Filters, StateStore
from cdc_repair.repair.worker import RepairWorker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, repair={"max_attempts": 3, "claim_timeout_s": 1,
                                  "backoff": {"initial_s": 0.1, "max_s": 0.5, "multiplier": 2.0, "jitter": 0.0}})
    yield e
    e.drop()


def test_two_workers_never_claim_the_same_entry_and_stale_claims_expire(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 11)])
    env.record(range(1, 11))
    a, b = StateStore(env.settings.state.dsn), StateStore(env.settings.state.dsn)
    try:
        got_a = a.claim("worker-a", Filters(), limit=6, stale_after_s=60)
        got_b = b.claim("worker-b", Filters(), limit=100, stale_after_s=60)
        assert len(got_a) == 6 and len(got_b) == 4
        assert not {e.id for e in got_a} & {e.id for e in got_b}
        assert b.claim("worker-b2", Filters(), limit=100, stale_after_s=60) == []
        assert not b.claim_one(got_a[0].id, "worker-b3", stale_after_s=60)  # rowcount 0: held by a
        time.sleep(2.1)  # claimed_at has second precision; the claims are now older than 1 s
        stolen = b.claim("worker-c", Filters(), limit=100, stale_after_s=1)
        assert len(stolen) == 10
        assert a.close_entries("worker-a", {got_a[0].id: ("repaired", None)}) == 0  # a lost its claim
    finally:
        a.close()
        b.close()


def test_failed_repair_backs_off_then_parks_after_max_attempts(env: Env) -> None:
    env.sql(f"ALTER TABLE {env.tgt} MODIFY title VARCHAR(5)")
    env.many(INSERT.format(t=env.src), [article(1, title="too long for five")])
    env.record([1])
    pk = pk_string([1])
    parked_before = REPAIRS.labels("articles", "forward", "parked")._value.get()
    worker = RepairWorker(env.settings, worker_id="w1")
    try:
        first = worker.run_due(10)
        assert (first.claimed, first.retry) == (1, 1)
        entry = env.ledger()[pk]
        assert (entry["status"], entry["attempts"]) == ("open", 1)
        assert "Data too long" in entry["last_error"] and entry["next_retry_at"] is not None
        for attempt in (2, 3):
            deadline = time.monotonic() + 5
            stats = worker.run_due(10)
            while stats.claimed == 0 and time.monotonic() < deadline:  # not due yet: backoff
                time.sleep(0.2)
                stats = worker.run_due(10)
            assert stats.claimed == 1
            assert env.ledger()[pk]["attempts"] == attempt
        entry = env.ledger()[pk]
        assert (entry["status"], entry["next_retry_at"]) == ("failed", None)  # parked, visible
        assert REPAIRS.labels("articles", "forward", "parked")._value.get() == parked_before + 1
        time.sleep(1.1)
        assert worker.run_due(10).claimed == 0  # parked entries are not retried by the worker
        assert worker.health()["totals"]["parked"] == 1
    finally:
        worker.close()


def test_backoff_delays_the_next_attempt(env: Env, mariadb: MariaDBServer) -> None:
    slow = make_env(mariadb, repair={"backoff": {"initial_s": 60, "max_s": 60, "jitter": 0.0}})
    try:
        slow.sql(f"ALTER TABLE {slow.tgt} MODIFY title VARCHAR(5)")
        slow.many(INSERT.format(t=slow.src), [article(1, title="too long for five")])
        slow.record([1])
        worker = RepairWorker(slow.settings)
        try:
            assert worker.run_due(10).retry == 1
            assert worker.run_due(10).claimed == 0
            retry_at = slow.ledger()[pk_string([1])]["next_retry_at"]
            now = slow.sql("SELECT UTC_TIMESTAMP()")[0][0]
            assert 55 <= (retry_at - now).total_seconds() <= 61
        finally:
            worker.close()
    finally:
        slow.drop()


def test_worker_loop_repairs_what_the_validator_records(env: Env) -> None:
    worker = RepairWorker(env.settings.model_copy(update={"scheduler": env.settings.scheduler.model_copy(
        update={"retry_interval_s": 0.2})}))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 6)])
        env.record(range(1, 6))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(e["status"] != "repaired" for e in env.ledger().values()):
            time.sleep(0.2)
        assert {e["status"] for e in env.ledger().values()} == {"repaired"}
        assert worker.health()["ok"] is True
    finally:
        stop.set()
        thread.join(10)
        worker.close()
    assert not thread.is_alive()


def test_killed_between_row_commit_and_ledger_update_neither_loses_nor_doubles(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(1), article(2)])
    env.many(INSERT.format(t=env.tgt), [article(3)])
    env.record([1, 2, 3])
    cfg = env.write_config(tmp_path / "c.yaml")
    argv = [sys.executable, "-m", "cdc_repair_dev.crashing_cli", "after_row_commit", "--config", str(cfg), "repair",
            "--execute"]
    crashed = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert crashed.returncode == 86, crashed.stderr
    assert env.row(env.tgt, 1) is not None and env.row(env.tgt, 3) is None  # the row transaction committed
    assert {e["status"] for e in env.ledger().values()} == {"repairing"}  # the ledger never heard of it
    assert env.sql(f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log")[0][0] == 0
    undo_before = env.sql(f"SELECT xid, pk FROM {env.online}.undo_log ORDER BY pk")
    assert len(undo_before) == 3

    time.sleep(2.1)  # the dead run's claims expire (claim_timeout_s = 1)
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert env.sql(f"SELECT xid, pk FROM {env.online}.undo_log ORDER BY pk") == undo_before  # not done twice
    led = env.ledger()
    assert {pk: (e["status"], e["repair_id"]) for pk, e in led.items()} == {
        pk: ("repaired", xid) for xid, pk in undo_before}
    logged = env.sql(f"SELECT repair_id FROM {env.prefix}_state.repair_log ORDER BY pk")
    assert sorted(r[0] for r in logged) == sorted(x for x, _ in undo_before)  # recorded exactly once
    assert [v for v in env.verdicts([1, 2, 3]) if v.is_mismatch] == []


def test_two_workers_racing_repair_each_key_exactly_once(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 201)])
    env.record(range(1, 201))
    workers = [RepairWorker(env.settings, worker_id=f"w{i}") for i in range(2)]
    stats: list[object] = []
    try:
        threads = [threading.Thread(target=lambda w=w: stats.append(w.run_due(50))) for w in workers]
        for _ in range(4):
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            threads = [threading.Thread(target=lambda w=w: stats.append(w.run_due(50))) for w in workers]
    finally:
        for w in workers:
            w.close()
    assert {e["status"] for e in env.ledger().values()} == {"repaired"}
    per_key = env.sql(f"SELECT pk, COUNT(*) FROM {env.online}.undo_log GROUP BY pk HAVING COUNT(*) > 1")
    assert per_key == []  # never repaired twice
    assert env.sql(f"SELECT COUNT(*) FROM {env.online}.undo_log")[0][0] == 200
    assert sum(w.totals.repaired for w in workers) == 200
    assert all(w.totals.repaired > 0 for w in workers)  # both really worked, side by side


def test_unreachable_target_releases_claims_and_the_loop_survives(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 4)])
    env.record(range(1, 4))
    down = settings_from_mapping({**env.raw, "servers": {**env.raw["servers"],
                                                         "online": {"dsn": "mysql://root:x@127.0.0.1:1/"}},
                                  "scheduler": {"retry_interval_s": 0.1}})
    worker = RepairWorker(down, worker_id="w-down")
    errors_before = ERRORS.labels("repair", "transient")._value.get()
    try:
        with pytest.raises(UnreachableError):
            worker.run_due(10)
        assert {e["status"] for e in env.ledger().values()} == {"open"}  # not stuck in 'repairing'
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while worker.health()["ok"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        health = worker.health()
        assert health["ok"] is False and "cannot connect" in health["last_error"]
        assert ERRORS.labels("repair", "transient")._value.get() > errors_before
    finally:
        worker.close()
    good = RepairWorker(env.settings)
    try:
        assert good.run_due(10).repaired == 3  # nothing was lost meanwhile
    finally:
        good.close()
