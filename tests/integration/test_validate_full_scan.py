"""Full scan against the real MariaDB: finds exactly the planted divergences, resumes, honours --where."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_validate_support import Env, make_env, plant_articles, plant_items

from cdc_repair.state import ledger, scan_progress
from cdc_repair.state.engine import state_engine
from cdc_repair.validate import scan_sides, scan_throttle
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, extra={"validator": {"settle_delay_s": 0, "recheck_delay_s": 0.05, "rechecks": 1,
                                               "full_scan": {"chunk_rows": 100, "max_chunk_rows": 2500}}})
    yield e
    e.drop()


def found(report: Any, pair: str) -> dict[int, str]:
    (res,) = [p for p in report.pairs if p.pair == pair]
    return {int(v.key[0]): v.kind for v in res.confirmed}


@pytest.fixture(params=["buckets", "keyset-only"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Integer keys use bucketed checksums; other keys (composite, strings, negatives) the generic path."""
    if request.param == "keyset-only":
        monkeypatch.setattr(scan_sides, "bucket_layout", lambda *a, **k: None)
    return str(request.param)


def test_full_scan_finds_exactly_the_planted_rows(env: Env, mode: str) -> None:
    expected = plant_articles(env)
    expected_items = plant_items(env)
    report = run_full_scan(env.settings)
    assert found(report, "articles") == expected
    assert found(report, "items") == expected_items
    art = report.pairs[0]
    assert art.rows >= 3000 and art.chunks > 1 and art.dirty_chunks >= 1
    assert report.differences == len(expected) + len(expected_items)
    engine = state_engine(env.settings.state.dsn)
    try:
        open_keys = {(e.pair, int(e.key[0])): e.kind for e in ledger.open_entries(engine)}
        assert open_keys == {**{("articles", k): v for k, v in expected.items()},
                             **{("items", k): v for k, v in expected_items.items()}}
        entry = ledger.get_entry(engine, "articles", '["300"]')
        assert entry is not None and entry.columns == ("title",) and entry.detected_by == "full_scan"
    finally:
        engine.dispose()
    # a second scan finds the same and does not duplicate ledger rows
    again = run_full_scan(env.settings, "articles")
    assert found(again, "articles") == expected


def test_full_scan_big_chunks_are_bisected(env: Env, mode: str) -> None:
    expected = plant_articles(env, n=6000)
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(update={
        "full_scan": env.settings.validator.full_scan.model_copy(update={"chunk_rows": 6000,
                                                                        "max_chunk_rows": 50000})})})
    report = run_full_scan(settings, "articles")
    assert found(report, "articles") == expected
    assert report.pairs[0].bisections >= 1
    assert report.pairs[0].rows_compared < 2 * 6000  # only the dirty leaves were hashed row by row


def test_where_limits_the_scan(env: Env) -> None:
    plant_articles(env)
    report = run_full_scan(env.settings, "articles", where="id BETWEEN 250 AND 450")
    assert found(report, "articles") == {300: "different", 301: "different", 302: "different", 400: "different"}


def test_stop_then_resume_skips_finished_chunks(env: Env) -> None:
    expected = plant_articles(env)
    env.settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(update={
        "full_scan": env.settings.validator.full_scan.model_copy(update={"max_chunk_rows": 100})})})
    stop = threading.Event()
    chunks_seen: list[int] = []

    def progress(pair: str, rows: int, total: int) -> None:
        chunks_seen.append(rows)
        if len(chunks_seen) == 5:
            stop.set()

    first = run_full_scan(env.settings, "articles", on_progress=progress, stop=stop)
    assert first.interrupted and first.pairs[0].chunks == 5
    engine = state_engine(env.settings.state.dsn)
    state = scan_progress.resumable(engine, "articles")
    engine.dispose()
    assert state is not None and state.last_key is not None and state.chunks == 5
    done_upto = int(state.last_key.strip('[]"'))
    rows_first = []

    def progress2(pair: str, rows: int, total: int) -> None:
        rows_first.append(rows)

    second = run_full_scan(env.settings, "articles", resume=True, on_progress=progress2)
    res = second.pairs[0]
    assert res.resumed and res.scan_id == first.pairs[0].scan_id and not res.interrupted
    # rows counted from the saved progress on: the finished chunks were not scanned again
    assert res.rows - first.pairs[0].rows <= 3001 - done_upto + 100
    got = found(first, "articles") | found(second, "articles")
    assert got == expected
    engine = state_engine(env.settings.state.dsn)
    assert scan_progress.resumable(engine, "articles") is None
    engine.dispose()


def test_absent_rule_finds_identical_copies(env: Env) -> None:
    """A rule rejecting an exact copy (drafts must not be online) is seen although both rows hash alike."""
    from test_validate_support import ART_INSERT, article

    from cdc_repair.config import RuleConfig

    rows = [article(i) for i in range(1, 301)]
    rows[9] = article(10, status=1)  # a draft that is also online, identical on both sides
    env.many(ART_INSERT.format(t=f"{env.author}.articles"), rows)
    env.many(ART_INSERT.format(t=f"{env.online}.published_articles"), rows)
    rules = [RuleConfig(when={"status": 1}, expect="absent"), RuleConfig(when={"status": 2}, expect="equal")]
    pair = env.settings.pair("articles").model_copy(update={"kind": "custom", "rules": rules})
    settings = env.settings.model_copy(update={"pairs": [pair]})
    report = run_full_scan(settings, "articles")
    assert found(report, "articles") == {10: "extra_in_target"}


def test_sigkill_mid_scan_then_resume_skips_finished_chunks(env: Env, tmp_path: Any) -> None:
    """A validator killed with SIGKILL mid-scan; `--resume` continues after the last saved chunk."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from cdc_repair.state.engine import state_engine

    expected = plant_articles(env)
    raw = dict(env.raw)
    raw["validator"] = {**raw["validator"], "recheck_delay_s": 0.05, "rechecks": 1,
                        "full_scan": {"chunk_rows": 100, "max_chunk_rows": 100, "max_rows_per_s": 1000}}
    config = Env(env.server, env.prefix, env.settings, raw).write_config(tmp_path / "c.yaml")
    argv = [sys.executable, "-m", "cdc_repair", "--config", str(config), "--json", "validate", "--full",
            "--pair", "articles"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = state_engine(env.settings.state.dsn)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            state = scan_progress.resumable(engine, "articles")
            if state is not None and state.chunks >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        state = scan_progress.resumable(engine, "articles")
        assert state is not None and state.status == "running" and state.last_key is not None
        done_rows = state.rows
        assert 0 < done_rows < 3000
        done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        doc = json.loads(done.stdout)["pairs"][0]
        assert doc["resumed"] and doc["scan_id"] == state.scan_id
        # counted rows continue from the saved progress: the finished chunks were not read again
        assert doc["rows"] <= 3003 + 100 and doc["rows"] >= 3000
        got = {(e.pair, int(e.key[0])): e.kind for e in ledger.open_entries(engine, due=False)}
        assert got == {("articles", k): v for k, v in expected.items()}
        assert scan_progress.resumable(engine, "articles") is None
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()


def test_scan_pauses_while_threads_running_is_high(env: Env) -> None:
    """max_threads_running: the scan waits while other queries run, and continues when they end."""
    import threading

    expected = plant_articles(env, n=1500)
    fs = env.settings.validator.full_scan.model_copy(update={"max_threads_running": 2})
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"full_scan": fs})})

    def busy() -> None:
        env.sql("SELECT SLEEP(2)")

    sleepers = [threading.Thread(target=busy) for _ in range(3)]
    for t in sleepers:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(env.sql("SELECT ID FROM information_schema.PROCESSLIST "
                                                      "WHERE INFO LIKE 'SELECT SLEEP(2)%'")) < 3:
        time.sleep(0.02)  # the scan must start while they run (its first chunk comes within milliseconds)
    scan_throttle._load_conns.clear()
    report = run_full_scan(settings, "articles")
    for t in sleepers:
        t.join()
    res = report.pairs[0]
    assert res.throttled_s >= 1.0 and found(report, "articles") == expected


def test_empty_source_and_target_only_rows(env: Env, mode: str) -> None:
    from test_validate_support import ART_INSERT, article

    assert run_full_scan(env.settings, "articles").differences == 0  # both empty
    env.many(ART_INSERT.format(t=f"{env.online}.published_articles"), [article(i) for i in (3, 50, 700)])
    report = run_full_scan(env.settings, "articles")
    assert found(report, "articles") == {3: "extra_in_target", 50: "extra_in_target", 700: "extra_in_target"}


def test_one_full_scan_per_pair_at_a_time(env: Env) -> None:
    from cdc_repair.errors import TransientError
    from cdc_repair.state.engine import state_engine

    engine = state_engine(env.settings.state.dsn)
    try:
        with scan_progress.scan_lock(engine, "articles") as mine:
            assert mine
            with pytest.raises(TransientError, match="already running"):
                run_full_scan(env.settings, "articles")
        assert run_full_scan(env.settings, "articles").differences == 0  # released
    finally:
        engine.dispose()


def test_rows_per_second_cap(env: Env) -> None:
    expected = plant_articles(env, n=2000)
    fs = env.settings.validator.full_scan.model_copy(update={"max_rows_per_s": 2000.0, "chunk_rows": 200,
                                                             "max_chunk_rows": 200})
    settings = env.settings.model_copy(update={"validator": env.settings.validator.model_copy(
        update={"full_scan": fs})})
    report = run_full_scan(settings, "articles")
    res = report.pairs[0]
    assert found(report, "articles") == expected
    assert res.throttled_s >= 0.5 and res.seconds >= 0.8  # ~2,000 rows at 2,000 rows/s
