"""String keys under a case-insensitive collation: the server orders 'a' < 'B' < 'c', Python orders 'B' < 'a'.

The full scan merge-joins per-row hashes in the server's order, so it must not compare keys with Python's `<`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_validate_support import Env, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.validate.check import check
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer

DDL = ("CREATE TABLE {t} (code VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(100), qty INT) "
       "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    raw: dict[str, Any] = {**e.raw, "validator": {"settle_delay_s": 0, "recheck_delay_s": 0.05, "rechecks": 1,
                                                 "full_scan": {"chunk_rows": 50, "max_chunk_rows": 200}}}
    raw["pairs"] = [{"name": "codes", "kind": "mirror",
                     "source": {"server": "author", "table": f"{e.author}.codes"},
                     "target": {"server": "online", "table": f"{e.online}.codes"}, "key": ["code"]}]
    e.settings = settings_from_mapping(raw)
    e.raw = raw
    e.sql(DDL.format(t=f"{e.author}.codes"))
    e.sql(DDL.format(t=f"{e.online}.codes"))
    yield e
    e.drop()


def test_mixed_case_string_keys_find_exactly_the_planted_rows(env: Env) -> None:
    # alternate case so that Python's order and the collation's order disagree in every chunk
    codes = [f"{chr(65 + i % 26) if i % 2 else chr(97 + i % 26)}{i:04d}" for i in range(1000)]
    rows = [(c, f"name {c}", i) for i, c in enumerate(codes)]
    insert = "INSERT INTO {t} (code, name, qty) VALUES (%s, %s, %s)"
    env.many(insert.format(t=f"{env.author}.codes"), rows)
    online = {c: r for c, r in zip(codes, rows, strict=True)}
    expected = {}
    for c in (codes[10], codes[501]):
        del online[c]
        expected[c] = "missing_in_target"
    for c in (codes[11], codes[700]):
        online[c] = (c, "changed", 0)
        expected[c] = "different"
    for extra in ("zz-extra", "Aa-extra", "m-extra"):
        online[extra] = (extra, "x", 1)
        expected[extra] = "extra_in_target"
    env.many(insert.format(t=f"{env.online}.codes"), list(online.values()))

    report = run_full_scan(env.settings, "codes")
    (res,) = report.pairs
    assert {v.key[0]: v.kind for v in res.confirmed} == expected
    assert report.differences == len(expected)



def test_keys_differing_only_in_case_are_one_row_for_check_scan_and_repair(env: Env) -> None:
    """'Case1' and 'case1' are the same key to the server. check() must pair them as one row, like the full
    scan does: never a missing row plus an orphan, whose repair would DELETE the online row. The mirror is
    byte-exact, keys included: the online spelling differs, so the row is `different` on its key column,
    reported once under the source's spelling, and the repair re-spells the online key in place."""
    insert = "INSERT INTO {t} (code, name, qty) VALUES (%s, %s, %s)"
    env.many(insert.format(t=f"{env.author}.codes"), [("Case1", "n", 1), ("Case2", "new name", 2), ("plain", "p", 3)])
    env.many(insert.format(t=f"{env.online}.codes"), [("case1", "n", 1), ("CASE2", "old name", 2), ("plain", "p", 3)])
    pair = env.settings.pair("codes")
    src, tgt = mysql.connect(env.server.dsn()), mysql.connect(env.server.dsn())
    try:
        verdicts = check(pair, [("Case1",), ("case1",), ("Case2",), ("CASE2",)], src, tgt)
    finally:
        src.close()
        tgt.close()
    assert [(v.key[0], v.kind, v.columns) for v in verdicts] == [
        ("Case1", "different", ("code",)), ("case1", "different", ("code",)),
        ("Case2", "different", ("code", "name")), ("CASE2", "different", ("code", "name"))]

    report = run_full_scan(env.settings, "codes")
    assert sorted((v.key[0], v.kind) for v in report.pairs[0].confirmed) == [
        ("Case1", "different"), ("Case2", "different")]
    assert report.differences == 2

    repaired = run_repair(env.settings, mode="execute")
    assert repaired.exit_code == 0, repaired.to_json()
    assert {r.status for r in repaired.results} == {"repaired"}
    # updated in place to the source's bytes; nothing was deleted
    assert env.sql(f"SELECT code, name FROM {env.online}.codes ORDER BY code") == [
        ("Case1", "n"), ("Case2", "new name"), ("plain", "p")]
    assert run_full_scan(env.settings, "codes").differences == 0
