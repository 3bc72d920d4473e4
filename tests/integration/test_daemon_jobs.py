"""Scheduler jobs against the real MariaDB: the capture stage's full-scan request is answered by a full
validation; a job cannot run twice at once; a run left 'running' by a dead daemon is closed."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import load_settings
from cdc_repair.runtime.jobs import JOBS, JobContext, run_job
from cdc_repair.runtime.leader import MySQLNamedLock
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.state import checkpoints, ledger, runs
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import create_isolated_schema, isolated_raw_config


def _ctx(demo_config: Any, tmp_path: Path) -> JobContext:
    tag = uuid.uuid4().hex[:8]
    raw = isolated_raw_config(yaml.safe_load(Path(demo_config({})).read_text()), tag, server_id=4243)
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(raw))
    settings = load_settings(path)
    create_isolated_schema(settings)
    return JobContext(LiveSettings(settings, path), state_engine(settings.state.dsn), "test:1")


def test_full_scan_request_is_answered_by_a_full_validation(demo_config: Any, mariadb: MariaDBServer,
                                                            tmp_path: Path) -> None:
    ctx = _ctx(demo_config, tmp_path)
    pair = ctx.settings.pairs[0]
    conn = mariadb.root_connection()
    with conn.cursor() as cur:  # published in the author table, missing online: what a binlog gap hides
        cur.execute(f"INSERT INTO {pair.source.table} (id, author_id, title, content, status, ctime, utime) "
                    "VALUES (1, 7, 't', 'c', 2, 1, 1)")
    conn.close()
    assert run_job(ctx, "full_scan_request", JOBS["full_scan_request"]) == "idle"  # nothing requested: no row
    assert runs.recent_runs(ctx.engine) == []
    marker = checkpoints.request_full_scan(ctx.engine, "binlog purged past the checkpoint")
    assert run_job(ctx, "full_scan_request", JOBS["full_scan_request"]) == "ok"
    entries = ledger.open_entries(ctx.engine, pair=pair.name)
    assert [(e.pk, e.kind, e.detected_by) for e in entries] == [('["1"]', "missing_in_target", "full_scan")]
    rows = {r["id"]: r for r in runs.recent_runs(ctx.engine)}
    assert rows[marker]["outcome"] == "ok" and rows[marker]["finished_at"] is not None
    assert any(r["job"] == "full_scan_request" and r["outcome"] == "ok" for r in rows.values())
    assert not checkpoints.full_scan_requested(ctx.engine)
    ctx.engine.dispose()


def test_a_job_never_runs_twice_at_once_and_dead_runs_are_closed(demo_config: Any, mariadb: MariaDBServer,
                                                                 tmp_path: Path) -> None:
    ctx = _ctx(demo_config, tmp_path)
    dead = runs.start_run(ctx.engine, "cleanup", "dead-host:1")  # a daemon died mid-run
    other = MySQLNamedLock(ctx.settings.state.dsn, f"{ctx.settings.ha.lock_name}:job:cleanup")
    assert other.try_acquire()  # another daemon is running cleanup right now
    started = threading.Event()

    def never(_: JobContext) -> str:
        started.set()
        return "ran"

    assert run_job(ctx, "cleanup", never) == "busy"
    assert not started.is_set()
    other.release()
    assert run_job(ctx, "cleanup", never) == "ok"
    rows = {r["id"]: r for r in runs.all_runs(ctx.engine)}
    assert rows[dead]["outcome"] == "failed" and "abandoned" in rows[dead]["detail"]
    assert [r["outcome"] for r in rows.values() if r["id"] != dead] == ["ok"]
    ctx.engine.dispose()


def test_cleanup_job_runs_against_real_tables(demo_config: Any, mariadb: MariaDBServer, tmp_path: Path) -> None:
    ctx = _ctx(demo_config, tmp_path)
    assert run_job(ctx, "cleanup", JOBS["cleanup"]) == "ok"
    detail = runs.recent_runs(ctx.engine, 1)[0]["detail"]
    assert "ledger=0" in detail and "undo_log=0" in detail
    ctx.engine.dispose()
