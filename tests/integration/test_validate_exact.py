"""Differences the validators must never miss or double count (issue 11 items 8-11), against the real MariaDB.

Oracles: a byte-exact SQL compare of the two tables (`BINARY` joins), independent of cdc-repair's code.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_validate_support import ART_INSERT, ITEM_INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair.state import ledger, scan_progress
from cdc_repair.state.engine import state_engine
from cdc_repair.validate import scan_sides
from cdc_repair.validate.check import check
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair.validate.window_scan import run_window_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer

CODES_DDL = ("CREATE TABLE {t} (code VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(100), qty INT) "
             "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
CODES_INSERT = "INSERT INTO {t} (code, name, qty) VALUES (%s, %s, %s)"


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, extra={"validator": {"settle_delay_s": 0, "recheck_delay_s": 0.05, "rechecks": 1,
                                               "full_scan": {"chunk_rows": 100, "max_chunk_rows": 2500}}})
    yield e
    e.drop()


@pytest.fixture(params=["buckets", "keyset-only"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Integer keys use bucketed checksums; the generic keyset path must behave the same."""
    if request.param == "keyset-only":
        monkeypatch.setattr(scan_sides, "bucket_layout", lambda *a, **k: None)
    return str(request.param)


def found(report: Any, pair: str) -> dict[Any, str]:
    (res,) = [p for p in report.pairs if p.pair == pair]
    return {v.key[0]: v.kind for v in res.confirmed}


def open_pks(env: Env, pair: str) -> dict[str, str]:
    engine = state_engine(env.settings.state.dsn)
    try:
        return {e.pk: e.kind for e in ledger.open_entries(engine, pair=pair, due=False)}
    finally:
        engine.dispose()


# ---------------------------------------------------------------- item 10: the key is part of the row hash


def test_full_scan_sees_payloads_swapped_between_two_keys(env: Env, mode: str) -> None:
    """Online rows 5 and 6 hold each other's payload: every column value set is the same, only the keys moved."""
    src, tgt = f"{env.author}.items", f"{env.online}.items"
    rows = [(i, f"name {i}", f"note {i}", f"body {i}".encode(), i * 1.5, 7) for i in range(1, 301)]
    env.many(ITEM_INSERT.format(t=src), rows)
    online = list(rows)
    online[4], online[5] = (5, *rows[5][1:]), (6, *rows[4][1:])
    env.many(ITEM_INSERT.format(t=tgt), online)
    # oracle: a byte-exact compare of the two tables says exactly 5 and 6 differ
    oracle = env.sql(f"SELECT s.id FROM {src} s JOIN {tgt} t ON t.id = s.id WHERE NOT (BINARY s.name <=> BINARY "
                     f"t.name AND BINARY s.body <=> BINARY t.body AND s.price <=> t.price) ORDER BY s.id")
    assert [r[0] for r in oracle] == [5, 6]

    report = run_full_scan(env.settings, "items")
    assert found(report, "items") == {5: "different", 6: "different"}
    assert report.differences == 2


# ---------------------------------------------------------------- item 9: keys compare by their bytes


@pytest.fixture
def codes(env: Env) -> Env:
    raw: dict[str, Any] = {**env.raw, "validator": {**env.raw["validator"],
                                                     "full_scan": {"chunk_rows": 50, "max_chunk_rows": 200}}}
    raw["pairs"] = [{"name": "codes", "kind": "mirror",
                     "source": {"server": "author", "table": f"{env.author}.codes"},
                     "target": {"server": "online", "table": f"{env.online}.codes"}, "key": ["code"]}]
    env.raw = raw
    env.settings = settings_from_mapping(raw)
    env.sql(CODES_DDL.format(t=f"{env.author}.codes"))
    env.sql(CODES_DDL.format(t=f"{env.online}.codes"))
    rows = [(f"key{i:02d}", f"name {i}", i) for i in range(100)]
    env.many(CODES_INSERT.format(t=f"{env.author}.codes"), rows)
    online = dict((r[0], r) for r in rows)
    online["key10"] = ("KEY10", "name 10", 10)  # same key to the _ci collation, other bytes
    online["key20"] = ("key20 ", "name 20", 20)  # PAD SPACE: equal to the collation, one byte longer
    env.many(CODES_INSERT.format(t=f"{env.online}.codes"), list(online.values()))
    return env


def byte_exact_diff(env: Env) -> set[str]:
    """Oracle: source keys without a byte-identical online row (and online keys without a source one)."""
    s, t = f"{env.author}.codes", f"{env.online}.codes"
    rows = env.sql(f"SELECT s.code FROM {s} s LEFT JOIN {t} t ON BINARY t.code = BINARY s.code AND BINARY t.name "
                   f"<=> BINARY s.name AND t.qty <=> s.qty WHERE t.code IS NULL UNION ALL SELECT t.code FROM {t} t "
                   f"LEFT JOIN {s} s ON BINARY s.code = BINARY t.code WHERE s.code IS NULL")
    return {str(r[0]) for r in rows}


def test_check_reports_a_key_spelled_differently_online(codes: Env) -> None:
    assert byte_exact_diff(codes) == {"key10", "key20", "KEY10", "key20 "}
    pair = codes.settings.pair("codes")
    src, tgt = mysql.connect(codes.server.dsn()), mysql.connect(codes.server.dsn())
    try:
        verdicts = check(pair, [("key10",), ("KEY10",), ("key20",), ("key21",)], src, tgt)
    finally:
        src.close()
        tgt.close()
    assert [(v.key[0], v.kind, v.columns) for v in verdicts] == [
        ("key10", "different", ("code",)), ("KEY10", "different", ("code",)), ("key20", "different", ("code",)),
        ("key21", "ok", ())]


def test_full_scan_reports_a_respelled_key_once_and_repair_makes_it_byte_exact(codes: Env) -> None:
    report = run_full_scan(codes.settings, "codes")
    assert sorted((v.key[0], v.kind, v.columns) for v in report.pairs[0].confirmed) == [
        ("key10", "different", ("code",)), ("key20", "different", ("code",))]
    assert report.differences == 2
    assert open_pks(codes, "codes") == {'["key10"]': "different", '["key20"]': "different"}

    repaired = run_repair(codes.settings, mode="execute")
    assert repaired.exit_code == 0, repaired.to_json()
    assert {r.pk: r.status for r in repaired.results} == {'["key10"]': "repaired", '["key20"]': "repaired"}
    assert byte_exact_diff(codes) == set()
    assert run_full_scan(codes.settings, "codes").differences == 0
    assert open_pks(codes, "codes") == {}

    # the undo records restore the online keys' old bytes
    online_keys = f"SELECT HEX(code) FROM {codes.online}.codes WHERE code IN ('key10', 'key20') ORDER BY code"
    store = StateStore(codes.settings.state.dsn)
    try:
        undone = rollback(codes.settings, store, repaired.run_id)
    finally:
        store.close()
    assert [i.outcome for i in undone.items] == ["undone", "undone"] and undone.exit_code == 0
    assert [r[0] for r in codes.sql(online_keys)] == [b"KEY10".hex().upper(), b"key20 ".hex().upper()]


def test_window_scan_reports_a_respelled_key_once(codes: Env) -> None:
    codes.sql(f"ALTER TABLE {codes.author}.codes ADD COLUMN utime BIGINT NOT NULL DEFAULT 0")
    codes.sql(f"ALTER TABLE {codes.online}.codes ADD COLUMN utime BIGINT NOT NULL DEFAULT 0")
    now_ms = int(time.time() * 1000)
    for db in (codes.author, codes.online):  # changed on both sides: seen from both, reported once
        codes.sql(f"UPDATE {db}.codes SET utime = %s WHERE code IN ('key10', 'key20', 'key30')", (now_ms,))
    raw = dict(codes.raw)
    raw["pairs"] = [{**raw["pairs"][0], "utime_column": "utime"}]
    settings = settings_from_mapping(raw)
    report = run_window_scan(settings, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), pair_name="codes")
    (res,) = report.pairs
    assert sorted((v.key[0], v.kind, v.columns) for v in res.confirmed) == [
        ("key10", "different", ("code",)), ("key20", "different", ("code",))]
    assert report.differences == 2 and res.keys_checked == 3


# ---------------------------------------------------------------- item 11: window scan counts keys once


@pytest.mark.parametrize("page", [5000, 4])
def test_window_scan_counts_a_key_changed_on_both_sides_once(env: Env, page: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with pages of 4 keys: the source's pages bound the target's ranges, no key is lost or doubled."""
    from cdc_repair.validate import window_scan

    monkeypatch.setattr(window_scan, "PAGE", page)
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 301)])
    env.many(ART_INSERT.format(t=tgt), [article(i) for i in range(1, 301)])
    now_ms = int(time.time() * 1000)
    both = list(range(10, 42))  # 32 keys changed on both sides, differently
    env.sql(f"UPDATE {src} SET title = CONCAT('src ', id), utime = %s WHERE id BETWEEN 10 AND 41", (now_ms,))
    env.sql(f"UPDATE {tgt} SET title = CONCAT('tgt ', id), utime = %s WHERE id BETWEEN 10 AND 41", (now_ms,))
    env.sql(f"UPDATE {src} SET title = 'only src', utime = %s WHERE id = 200", (now_ms,))
    env.sql(f"UPDATE {tgt} SET title = 'only tgt', utime = %s WHERE id IN (5, 250)", (now_ms,))
    # re-checks due at once: a key's first sighting is confirmed before the target side meets it again
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"recheck_delay_s": 0.0})})
    report = run_window_scan(settings, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), pair_name="articles")
    (res,) = report.pairs
    keys = [int(v.key[0]) for v in res.confirmed]
    assert sorted(keys) == [5, *both, 200, 250]
    assert report.differences == len(both) + 3 and res.diffs == {"different": len(both) + 3}
    assert res.keys_checked == len(both) + 3


# ---------------------------------------------------------------- item 8: a resumed scan reports the whole scan


def test_resumed_scan_reports_what_it_found_before_a_sigkill(env: Env, tmp_path: Path) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 3001)])
    online = {i: article(i) for i in range(1, 3001)}
    del online[10]
    online[20] = article(20, title="changed")
    online[35] = article(35, content=b"changed")
    env.many(ART_INSERT.format(t=tgt), list(online.values()))
    expected = {10: "missing_in_target", 20: "different", 35: "different"}  # all in the first chunks

    raw = dict(env.raw)
    raw["validator"] = {**raw["validator"], "full_scan": {"chunk_rows": 100, "max_chunk_rows": 100,
                                                          "max_rows_per_s": 1000}}
    config = env.write_config(tmp_path / "c.yaml")
    Env(env.server, env.prefix, env.settings, raw).write_config(config)
    argv = [sys.executable, "-m", "cdc_repair", "--config", str(config), "--json", "validate", "--full",
            "--pair", "articles"]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    engine = state_engine(env.settings.state.dsn)
    try:
        deadline = time.monotonic() + 120  # generous: the machine may be busy
        while time.monotonic() < deadline:
            state = scan_progress.resumable(engine, "articles")
            if state is not None and state.chunks >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.close()
        state = scan_progress.resumable(engine, "articles")
        assert state is not None and 0 < state.rows < 3000, (tmp_path / "first.log").read_text()[-3000:]
        assert {int(e.key[0]): e.kind for e in ledger.open_entries(engine, due=False)} == expected
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()

    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    doc = json.loads(done.stdout)
    assert doc["differences"] == 3
    (pair,) = doc["pairs"]
    assert pair["resumed"] and {int(f["key"][0]): f["kind"] for f in pair["found"]} == expected
    assert pair["diffs"] == {"missing_in_target": 1, "different": 2}


# ---------------------------------------------------------------- every hard kind, one scan (issue 13's list)

HARD_DDL = ("CREATE TABLE {t} (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR(255), note VARCHAR(64), body BLOB, "
            "mtime DATETIME(6)) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")


def hard_pair(env: Env, select: str) -> Settings:
    """A mirror pair `hard` of two identical tables filled by `select` (columns of HARD_DDL)."""
    raw: dict[str, Any] = {**env.raw, "pairs": [{"name": "hard", "kind": "mirror",
                                                 "source": {"server": "author", "table": f"{env.author}.hard"},
                                                 "target": {"server": "online", "table": f"{env.online}.hard"}}]}
    for t in (f"{env.author}.hard", f"{env.online}.hard"):
        env.sql(HARD_DDL.format(t=t))
    env.sql(f"INSERT INTO {env.author}.hard {select}")
    env.sql(f"INSERT INTO {env.online}.hard SELECT * FROM {env.author}.hard")
    return settings_from_mapping(raw)


def test_full_scan_finds_every_hard_kind_and_nothing_else(env: Env, mode: str) -> None:
    settings = hard_pair(env, "SELECT seq, CONCAT('title ', seq), NULL, REPEAT(MD5(seq), 40), TIMESTAMP'2024-01-01 "
                              "00:00:00' + INTERVAL seq SECOND + INTERVAL 5 MICROSECOND FROM mysql.seq_1_to_3000")
    tgt = f"{env.online}.hard"
    plants = {101: "title = CONCAT(title, ' ')", 202: "title = UPPER(title)", 303: "note = ''",
              404: "title = CONCAT(LEFT(title, LENGTH(title) - 1), CHAR(0))",
              505: "mtime = mtime + INTERVAL 1 MICROSECOND",
              606: "body = CONCAT(LEFT(body, LENGTH(body) - 1), 'Z')"}
    for i, assignment in plants.items():
        env.sql(f"UPDATE {tgt} SET {assignment} WHERE id = {i}")
    env.sql(f"DELETE FROM {tgt} WHERE id = 707")
    env.sql(f"DELETE FROM {env.author}.hard WHERE id = 808")
    env.sql(f"INSERT INTO {tgt} SELECT -5, title, note, body, mtime FROM {tgt} WHERE id = 1")
    expected = {**{i: "different" for i in plants}, 707: "missing_in_target", 808: "extra_in_target",
                -5: "extra_in_target"}
    report = run_full_scan(settings, "hard")
    assert {int(k): v for k, v in found(report, "hard").items()} == expected
    assert report.differences == len(expected)
    if mode == "buckets":  # the row below the source's range does not turn the scan into small chunks
        assert report.pairs[0].rows_compared < 3000
    assert run_full_scan(settings, "hard").differences == len(expected)  # a second scan: the same, no more



def test_equal_edits_in_many_rows_of_one_chunk_do_not_cancel(env: Env, mode: str) -> None:
    """The same edit in an even number of rows of one chunk (and one bucket): with a linear row hash combined
    by XOR (pt-table-sync's `BIT_XOR(CRC32(…))`) the rows' changes cancel pairwise and the chunk looks clean."""
    settings = hard_pair(env, "SELECT seq, CONCAT('title ', seq), NULL, REPEAT('x', 100), TIMESTAMP'2024-01-01 "
                              "00:00:00' FROM mysql.seq_1_to_2000")
    # same length, same bytes changed: 'title 1000'..'title 1011' -> 'TITLE 10xx'; 'x' -> 'y' at one offset
    env.sql(f"UPDATE {env.online}.hard SET title = UPPER(title) WHERE id BETWEEN 1000 AND 1011")
    env.sql(f"UPDATE {env.online}.hard SET body = CONCAT('y', SUBSTRING(body, 2)) WHERE id BETWEEN 1500 AND 1503")
    expected = {i: "different" for i in [*range(1000, 1012), *range(1500, 1504)]}
    report = run_full_scan(settings, "hard")
    assert {int(k): v for k, v in found(report, "hard").items()} == expected


# ---------------------------------------------------------------- a scan re-finding known entries (issue 13)


def test_a_scan_refinding_known_entries_updates_the_ledger_in_bulk(env: Env) -> None:
    """The second and third scans find the same 600 rows: the ledger takes them in a few bulk statements (not
    one UPDATE per key), counts them seen twice, and re-opens entries marked repaired."""
    src, tgt = f"{env.author}.items", f"{env.online}.items"
    rows = [(i, f"name {i}", None, b"b", 1.0, 1) for i in range(1, 3001)]
    env.many(ITEM_INSERT.format(t=src), rows)
    env.many(ITEM_INSERT.format(t=tgt), [(i, n + ("!" if i % 5 == 0 else ""), *r) for i, n, *r in rows])

    def updates() -> int:
        return int(env.sql("SHOW GLOBAL STATUS LIKE 'Com_update'")[0][1])

    assert run_full_scan(env.settings, "items").differences == 600
    before = updates()
    assert run_full_scan(env.settings, "items").differences == 600
    assert updates() - before < 60  # progress saves only; was 600+ (one per known key)
    state = f"{env.prefix}_state.inconsistency"
    assert env.sql(f"SELECT seen_count, status, COUNT(*) FROM {state} GROUP BY seen_count, status") == [
        (2, "open", 600)]
    env.sql(f"UPDATE {state} SET status = 'repaired', attempts = 3")
    before = updates()
    assert run_full_scan(env.settings, "items").differences == 600
    assert updates() - before < 60
    assert env.sql(f"SELECT seen_count, status, attempts, COUNT(*) FROM {state} GROUP BY 1, 2, 3") == [
        (3, "open", 0, 600)]


def test_the_ledger_records_a_respelled_row_once_whichever_spelling_was_asked(codes: Env) -> None:
    """The stream may ask for the online spelling ('KEY10', an event of the online table) and the source's
    ('key10'): one ledger entry, under the source's spelling; the verdicts keep the key each caller asked for."""
    pair = codes.settings.pair("codes")
    src, tgt = mysql.connect(codes.server.dsn()), mysql.connect(codes.server.dsn())
    try:
        asked_online = check(pair, [("KEY10",)], src, tgt)
        asked_source = check(pair, [("key10",)], src, tgt)
    finally:
        src.close()
        tgt.close()
    assert [v.key for v in asked_online] == [("KEY10",)] and [v.key for v in asked_source] == [("key10",)]
    engine = state_engine(codes.settings.state.dsn)
    try:
        ledger.record_verdicts(engine, asked_online, "stream", source_events={'["KEY10"]': {"type": "UPDATE"}})
        ledger.record_verdicts(engine, asked_source, "stream")
    finally:
        engine.dispose()
    assert open_pks(codes, "codes") == {'["key10"]': "different"}
