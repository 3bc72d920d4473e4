"""Shared fixtures: the embedded MariaDB and broker (session scope) and a demo-config writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.fixtures import broker, mariadb, services_dir  # noqa: F401 - pytest fixtures

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_config(tmp_path: Path, mariadb: MariaDBServer, broker: Broker) -> Any:  # noqa: F811
    """Write config/demo.yaml pointed at the session's services (plus overrides) and return its path."""

    def write(overrides: dict[str, Any] | None = None, name: str = "config.yaml") -> Path:
        raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
        dsn = mariadb.dsn().to_url()
        for server in raw["servers"].values():
            server["dsn"] = dsn
        raw["state"]["dsn"] = mariadb.dsn("cdc_repair").to_url()
        raw["kafka"]["bootstrap_servers"] = [broker.bootstrap]
        for key, value in (overrides or {}).items():
            raw[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a test that did not run: fail the run and name what skipped."""
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            print(f"\nCI: skipped test counts as a failure: {report.nodeid}: {report.longrepr}")
        session.exitstatus = 1
