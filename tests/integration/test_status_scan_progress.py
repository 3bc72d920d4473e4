"""A real full scan as the status document and /metrics show it while it runs: rows done of the estimated
total, rate, ETA (from the state table `scan_progress`, so a scan run by the CLI shows on the daemon too)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_validate_support import Env, make_env, plant_articles

from cdc_repair import metrics
from cdc_repair.observe import refresh_ledger_gauges
from cdc_repair.runtime.status import build_status
from cdc_repair.state import scan_progress
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, extra={"validator": {"settle_delay_s": 0, "recheck_delay_s": 0.05, "rechecks": 1}})
    yield e
    e.drop()


def test_a_running_full_scan_shows_rows_of_total_rate_and_eta(env: Env) -> None:
    plant_articles(env, n=3000)
    env.sql(f"ANALYZE TABLE {env.author}.articles, {env.online}.published_articles")  # the estimate recorded
    fs = env.settings.validator.full_scan.model_copy(update={"max_rows_per_s": 1000.0, "chunk_rows": 100,
                                                             "max_chunk_rows": 100})
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"full_scan": fs})})
    engine = state_engine(settings.state.dsn)
    scan = threading.Thread(target=run_full_scan, args=(settings, "articles"), daemon=True)
    scan.start()
    try:
        running: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and scan.is_alive():
            found = [s for s in build_status(settings, engine)["scans"] or [] if s["pair"] == "articles"]
            if found and found[0]["status"] == "running" and found[0]["rows"] >= 500:
                running = found[0]
                break
            time.sleep(0.2)
        assert running, "no running scan with progress seen"
        assert running["rows_total"] is not None and running["rows_total"] >= 2000, running
        assert 0 < running["progress"] < 1 and running["rows_per_s"] > 0 and running["eta_s"] > 0, running
        refresh_ledger_gauges(engine)
        ratio = metrics.REGISTRY.get_sample_value("cdc_repair_scan_progress_ratio", {"pair": "articles"})
        assert ratio is not None and 0 < ratio < 1
        scan.join(120)
        assert not scan.is_alive()
        (done,) = [s for s in build_status(settings, engine)["scans"] if s["pair"] == "articles"]
        assert done["status"] == "done" and done["eta_s"] is None and done["rows"] >= 3000
        refresh_ledger_gauges(engine)
        assert metrics.REGISTRY.get_sample_value("cdc_repair_scan_progress_ratio", {"pair": "articles"}) == 1.0
    finally:
        scan.join(120)
        engine.dispose()


def test_a_state_database_from_before_rows_total_gets_the_column(mariadb: MariaDBServer) -> None:
    """`create_all` creates only missing tables: a state database created by an older version gains the new
    nullable column when the service opens it, and its scans keep working."""
    name = f"old_{uuid.uuid4().hex[:8]}"
    dsn = mariadb.dsn(name)
    state_engine(dsn).dispose()
    mariadb.query(f"ALTER TABLE `{name}`.scan_progress DROP COLUMN rows_total")
    try:
        engine = state_engine(dsn)
        scan_progress.start(engine, "s1", "articles", None)
        scan_progress.set_total(engine, "s1", "articles", 1234)
        (row,) = scan_progress.latest_per_pair(engine)
        assert row["rows_total"] == 1234
        engine.dispose()
    finally:
        mariadb.query(f"DROP DATABASE `{name}`")
