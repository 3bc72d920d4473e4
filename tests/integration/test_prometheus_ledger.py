"""A real Prometheus scraping the ledger gauges while the state database goes down: the ledger series go
absent (no stale count, no 0 that reads as "all consistent") and `cdc_repair_ledger_up` says 0; back when the
database returns."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_observe_roles import start_prometheus  # same folder (rootdir mode)
from test_prometheus import query
from test_web import seed_state, settings_for

from cdc_repair.state.engine import state_engine
from cdc_repair.web import start_web
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


def eventually(predicate: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def test_prometheus_sees_no_ledger_series_and_ledger_up_0_while_the_state_database_is_down(
        tmp_path: Path, broker: Broker) -> None:
    db = MariaDBServer(tmp_path / "db", server_id=73).start()
    web = None
    proc = None
    engine = None
    try:
        state_db = f"prom_{uuid.uuid4().hex[:6]}"
        settings = settings_for(db, broker, state_db)
        engine = state_engine(settings.state.dsn)
        pair = f"pl{uuid.uuid4().hex[:5]}"
        seed_state(engine, pair)
        web = start_web(settings, lambda: {"stages": []}, lambda: {"test": True}, ledger_refresh_s=0.3,
                        engine=engine)
        proc, prom = start_prometheus(tmp_path, [f"127.0.0.1:{web.port}"])
        series = f'cdc_repair_ledger_open_inconsistencies{{pair="{pair}"}}'

        def values(expr: str) -> dict[str, float]:
            return {r["metric"].get("status", ""): float(r["value"][1]) for r in query(prom, expr)}

        eventually(lambda: values(series) == {"open": 3.0, "failed": 2.0, "repairing": 1.0}, "the ledger series")
        assert values("cdc_repair_ledger_up") == {"": 1.0}

        db.stop()
        eventually(lambda: values("cdc_repair_ledger_up") == {"": 0.0}, "ledger_up 0 in Prometheus")
        eventually(lambda: not values(series), "the ledger series to go absent")
        assert query(prom, f'cdc_repair_ledger_oldest_open_age_seconds{{pair="{pair}"}}') == []

        db.start()
        eventually(lambda: values(series) == {"open": 3.0, "failed": 2.0, "repairing": 1.0}, "the series back")
        assert values("cdc_repair_ledger_up") == {"": 1.0}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if web is not None:
            web.stop()
        if engine is not None:
            engine.dispose()
        db.stop()
