"""`cdc-repair run` as a real subprocess: leader election and failover, SIGTERM bound, SIGHUP reload, status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair_dev.harness import DaemonProcess, isolated_raw_config


def wait_for(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


@pytest.fixture
def isolated(demo_config: Any, tmp_path: Path) -> Callable[..., Path]:
    """A config with its own schemas, state database, topics, consumer group and lock name; no capture, web off."""
    tag = uuid.uuid4().hex[:8]

    def make(**overrides: Any) -> Path:
        raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
        raw = isolated_raw_config(raw, tag, server_id=4242)
        raw.update({
            "capture": [],
            "web": {"enabled": False},
            "scheduler": {"full_scan_cron": "0 3 * * *", "window_scan_interval_s": 3600, "retry_interval_s": 1,
                          "lag_check_interval_s": 1, "misfire_grace_s": 30},
        })
        raw["ha"]["lock_retry_s"] = 0.5
        raw.update(overrides)
        path = tmp_path / f"config-{tag}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.stop(20)


def spawn(daemons: list[DaemonProcess], config: Path, tmp_path: Path, name: str) -> DaemonProcess:
    d = DaemonProcess(config, tmp_path / f"{name}.log", name=name).start()
    daemons.append(d)
    return d


def status(config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(config), "--json", "status"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def is_leader(d: DaemonProcess) -> bool:
    return "elected leader" in d.log_text() and "leader lock lost" not in d.log_text()


def test_standby_takes_over_after_kill_9_and_jobs_never_overlap(isolated: Callable[..., Path],
                                                                daemons: list[DaemonProcess], tmp_path: Path) -> None:
    config = isolated()
    a = spawn(daemons, config, tmp_path, "a")
    assert a.wait_for_log("elected leader", 60), a.log_text()[-3000:]
    b = spawn(daemons, config, tmp_path, "b")
    assert b.wait_for_log("daemon", 60)
    time.sleep(3)
    assert "elected leader" not in b.log_text()  # one leader at a time
    doc = status(config)
    assert doc["leader_lock"]["holder_connection_id"] is not None
    assert wait_for(lambda: any(r["job"] == "lag_check" for r in status(config)["job_runs"] or []), 30)

    a.kill()
    t0 = time.monotonic()
    assert b.wait_for_log("elected leader", 30), b.log_text()[-3000:]
    assert time.monotonic() - t0 < 10  # bounded takeover: lock_retry_s 0.5 + the server noticing the socket close
    killed_at = time.time()
    assert wait_for(lambda: any(r["host"].endswith(f":{b.pid}") and r["outcome"] != "running"
                                for r in status(config)["job_runs"] or []), 30)
    runs = status(config)["job_runs"]
    assert runs and killed_at > 0
    _assert_no_overlap(config)
    assert b.stop(30) == 0


def _assert_no_overlap(config: Path) -> None:
    from cdc_repair.config import load_settings
    from cdc_repair.runtime.jobs import find_overlaps
    from cdc_repair.state import runs
    from cdc_repair.state.engine import state_engine

    engine = state_engine(load_settings(config).state.dsn)
    try:
        all_runs = runs.all_runs(engine)
    finally:
        engine.dispose()
    assert all_runs
    assert find_overlaps(all_runs) == []


def test_sigterm_stops_within_bound_and_releases_the_lock(isolated: Callable[..., Path],
                                                         daemons: list[DaemonProcess], tmp_path: Path) -> None:
    config = isolated()
    a = spawn(daemons, config, tmp_path, "a")
    assert a.wait_for_log("elected leader", 60), a.log_text()[-3000:]
    t0 = time.monotonic()
    a.terminate()
    assert a.wait(25) == 0, a.log_text()[-3000:]
    assert time.monotonic() - t0 < 25
    assert "releasing the leader lock" in a.log_text()
    assert status(config)["leader_lock"]["holder_connection_id"] is None


def test_sighup_applies_settle_delay_live_and_rejects_a_broken_file(isolated: Callable[..., Path],
                                                                   daemons: list[DaemonProcess],
                                                                   tmp_path: Path) -> None:
    config = isolated()
    a = spawn(daemons, config, tmp_path, "a")
    assert a.wait_for_log("elected leader", 60), a.log_text()[-3000:]
    raw = yaml.safe_load(config.read_text())
    raw["validator"]["settle_delay_s"] = 7.5
    raw["web"]["port"] = 9999
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    a.hup()
    assert a.wait_for_log("applied live: validator.settle_delay_s", 20), a.log_text()[-3000:]
    assert a.wait_for_log("restarting stage validate to apply the reloaded settings", 20)
    records = a.log_records()
    applied = [r for r in records if "applied live" in r.get("msg", "")]
    assert applied[-1]["live_keys"] == ["validator.settle_delay_s"]
    restart = [r for r in records if "only after a restart" in r.get("msg", "")]
    assert restart[-1]["restart_keys"] == ["web.port"]

    config.write_text(config.read_text().replace("settle_delay_s: 7.5", "settle_delay_s: -3"))
    a.hup()
    assert a.wait_for_log("config reload rejected", 20)
    assert "validator.settle_delay_s" in [r for r in a.log_records() if "rejected:" in r.get("msg", "")][-1]["msg"]
    time.sleep(1)
    assert a.alive()
    assert a.stop(25) == 0


def test_status_command_shows_ledger_jobs_and_leader(isolated: Callable[..., Path]) -> None:
    config = isolated()
    doc = status(config)
    for key in ("checkpoints", "ledger", "recent_repairs", "job_runs", "last_job_runs", "leader_lock", "errors"):
        assert key in doc
    assert doc["errors"] == []
    assert doc["leader_lock"]["holder_connection_id"] is None
    text = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(config), "status"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert text.returncode == 0 and "leader lock" in text.stdout and "ledger: 0 open" in text.stdout


def test_a_hung_leader_loses_the_lock_and_steps_down_when_it_wakes(isolated: Callable[..., Path],
                                                                    daemons: list[DaemonProcess],
                                                                    tmp_path: Path) -> None:
    import os
    import signal

    config = isolated()
    a = spawn(daemons, config, tmp_path, "a")
    assert a.wait_for_log("elected leader", 60), a.log_text()[-3000:]
    b = spawn(daemons, config, tmp_path, "b")
    assert b.wait_for_log("daemon", 60)
    os.kill(a.pid, signal.SIGSTOP)  # hung, not dead: its socket stays open
    try:
        t0 = time.monotonic()
        assert b.wait_for_log("elected leader", 40), b.log_text()[-3000:]
        assert time.monotonic() - t0 < 25  # the server dropped the silent session after wait_timeout (10 s here)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait_for_log("leader lock lost", 20), a.log_text()[-3000:]
    assert a.wait_for_log("stage scheduler stopped", 10), a.log_text()[-3000:]
    time.sleep(2)
    assert a.log_text().count("elected leader") == 1  # it does not take the lock back from b
    assert a.stop(25) == 0 and b.stop(25) == 0
