"""`repair.auto_repair: false` means the daemon writes nothing, on every path (repair stage, scheduled jobs), and
a SIGHUP switches it both ways without a restart (issue 11 item 1)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair.config import Settings, load_settings
from cdc_repair.db import mysql
from cdc_repair.state import ledger, runs
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.check import check
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config

ROW = "INSERT INTO {t} (id, author_id, title, content, status, ctime, utime) VALUES (%s, 7, %s, 'body', 2, 1, 1)"


def wait_for(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


@pytest.fixture
def daemon_config(demo_config: Any, tmp_path: Path) -> Path:
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4251)
    raw.update({"capture": [], "web": {"enabled": False},
                "scheduler": {"full_scan_cron": "0 3 * * *", "window_scan_interval_s": 3600, "retry_interval_s": 1,
                              "lag_check_interval_s": 1, "misfire_grace_s": 30}})
    raw["repair"] = {**raw.get("repair", {}), "auto_repair": False,
                     "backoff": {"initial_s": 0.1, "max_s": 0.5, "multiplier": 2.0, "jitter": 0.0}}
    raw["ha"]["lock_retry_s"] = 0.5
    path = tmp_path / f"config-{tag}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    create_isolated_schema(load_settings(path))
    return path


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.stop(20)


def _title(settings: Settings, i: int) -> str | None:
    conn = mysql.connect(settings.server_dsn(settings.pairs[0].target.server))
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT title FROM {settings.pairs[0].target.table} WHERE id = %s", (i,))
            row = cur.fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _break_and_record(mariadb: MariaDBServer, settings: Settings, i: int) -> None:
    """A published article whose online title was changed by hand, recorded in the ledger as the validator would."""
    pair = settings.pairs[0]
    conn = mariadb.root_connection()
    with conn.cursor() as cur:
        cur.execute(ROW.format(t=pair.source.table), (i, f"title {i}"))
        cur.execute(ROW.format(t=pair.target.table), (i, f"broken by hand {i}"))
    conn.close()
    conn = mysql.connect(settings.server_dsn(pair.source.server))
    try:
        verdicts = check(pair, [(i,)], conn, conn)
    finally:
        conn.close()
    assert [v.kind for v in verdicts] == ["different"]
    engine = state_engine(settings.state.dsn)
    try:
        ledger.record_verdicts(engine, verdicts, "cli")
    finally:
        engine.dispose()


def _open_keys(settings: Settings) -> set[str]:
    engine = state_engine(settings.state.dsn)
    try:
        return {e.pk for e in ledger.open_entries(engine, statuses=("open", "failed", "repairing"), due=False)}
    finally:
        engine.dispose()


def _job_runs(settings: Settings, job: str) -> int:
    engine = state_engine(settings.state.dsn)
    try:
        return sum(1 for r in runs.all_runs(engine) if r["job"] == job and r["outcome"] != "running")
    finally:
        engine.dispose()


def _set_auto_repair(path: Path, value: bool) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["repair"]["auto_repair"] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _quiet_period(d: DaemonProcess, settings: Settings, passes: int = 6) -> None:
    """Let the scheduler fire `passes` more times (1 s apart: several retry intervals) while the daemon lives."""
    before = _job_runs(settings, "lag_check")
    assert wait_for(lambda: _job_runs(settings, "lag_check") >= before + passes, 60), d.log_text()[-3000:]
    assert d.alive()


def test_auto_repair_false_writes_nothing_and_sighup_switches_it_both_ways(
        daemon_config: Path, mariadb: MariaDBServer, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    settings = load_settings(daemon_config)
    _break_and_record(mariadb, settings, 1)
    d = DaemonProcess(daemon_config, tmp_path / "d.log").start()
    daemons.append(d)
    assert d.wait_for_log("elected leader", 60), d.log_text()[-3000:]

    _quiet_period(d, settings)  # well past retry_interval_s (1 s) and the retry backoff
    assert _title(settings, 1) == "broken by hand 1"
    assert _open_keys(settings) == {'["1"]'}

    _set_auto_repair(daemon_config, True)  # switched on live: the open entry is repaired without a restart
    d.hup()
    assert d.wait_for_log("applied live: repair.auto_repair", 20), d.log_text()[-3000:]
    assert wait_for(lambda: _title(settings, 1) == "title 1", 60), d.log_text()[-3000:]
    assert wait_for(lambda: not _open_keys(settings), 30)

    _set_auto_repair(daemon_config, False)  # and off again: a new break stays as it is
    d.hup()
    assert wait_for(lambda: d.log_text().count("applied live: repair.auto_repair") >= 2, 20), d.log_text()[-3000:]
    _break_and_record(mariadb, settings, 2)
    _quiet_period(d, settings)
    assert _title(settings, 2) == "broken by hand 2"
    assert _open_keys(settings) == {'["2"]'}
    assert d.stop(25) == 0
