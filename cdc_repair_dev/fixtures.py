"""pytest fixtures (session scope) for the embedded services; loaded by tests/conftest.py.

One MariaDB and one broker per test session; tests isolate themselves with their own databases and topics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def mariadb(services_dir: Path) -> Iterator[MariaDBServer]:
    server = MariaDBServer(services_dir / "mariadb", server_id=11).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[Broker]:
    b = Broker(services_dir / "broker").start()
    try:
        yield b
    finally:
        b.stop()
