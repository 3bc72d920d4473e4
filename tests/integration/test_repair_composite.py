"""A mirror pair with a composite key and typed columns (DECIMAL, DATETIME(6), NULLs, binary): repair + rollback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from test_repair_support import Env, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import settings_from_mapping
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer

DDL = """CREATE TABLE {t} (tenant VARCHAR(20) NOT NULL, id INT NOT NULL, price DECIMAL(10,3), at DATETIME(6),
  note VARCHAR(50) NULL, raw VARBINARY(16), PRIMARY KEY (tenant, id)) ENGINE=InnoDB"""
ROWS = [("acme", 1, Decimal("1.500"), dt.datetime(2024, 1, 2, 3, 4, 5, 678901), None, b"\x00\x01"),
        ("acme", 2, Decimal("2.000"), dt.datetime(2024, 1, 2, 3, 4, 5), "n", b"\xff"),
        ("beta", 1, None, None, "", b"")]


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    e.sql(DDL.format(t=f"{e.author}.items"))
    e.sql(DDL.format(t=f"{e.online}.items"))
    raw = {**e.raw, "pairs": [{"name": "items", "kind": "mirror", "key": ["tenant", "id"],
                               "source": {"server": "author", "table": f"{e.author}.items"},
                               "target": {"server": "online", "table": f"{e.online}.items"}}]}
    e.settings = settings_from_mapping(raw)
    e.raw = raw
    yield e
    e.drop()


def rows(env: Env, db: str) -> list[tuple[object, ...]]:
    return env.sql(f"SELECT tenant, id, price, at, note, raw FROM {db}.items ORDER BY tenant, id")


def test_composite_key_repair_and_exact_rollback(env: Env) -> None:
    ins = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s)"
    env.many(ins.format(t=f"{env.author}.items"), ROWS)
    env.many(ins.format(t=f"{env.online}.items"), [("acme", 2, Decimal("9.000"), None, "n", b"\xff"),
                                                    ("beta", 1, None, None, None, b""), ("gone", 7, None, None, None,
                                                                                        None)])
    before = rows(env, env.online)
    keys = ('["acme","1"]', '["acme","2"]', '["beta","1"]', '["gone","7"]')
    report = run_repair(env.settings, mode="execute", pair_names=("items",), keys=keys)
    assert report.exit_code == 0, report.to_json()
    assert sorted(r.status for r in report.results) == ["repaired"] * 4
    assert rows(env, env.online) == rows(env, env.author) == ROWS
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, report.run_id)
    finally:
        store.close()
    assert {i.outcome for i in back.items} == {"undone"}
    assert rows(env, env.online) == before  # DECIMAL scale, microseconds, NULL vs '' and bytes all exact
