"""The status page renderer and the web server's own behaviour (no database or broker needed)."""

from __future__ import annotations

import copy
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from cdc_repair.config import WebConfig
from cdc_repair.errors import ConfigError
from cdc_repair.web import start_web
from cdc_repair.web.history import Totals, point
from cdc_repair.web.page import render_page
from cdc_repair.web.server import _StatusCache, stage_readiness
from cdc_repair.web.values import fmt_number, fmt_time
from cdc_repair_dev.example_status import EXAMPLE_STATUS


def example() -> dict[str, Any]:
    return copy.deepcopy(dict(EXAMPLE_STATUS))


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# ------------------------------------------------------------------ rendering


def test_values_from_the_database_are_escaped() -> None:
    doc = example()
    doc["recent_repairs"][0]["pk"] = '["<script>alert(1)</script>"]'
    doc["job_runs"][0]["detail"] = "<img src=x onerror=alert(1)>"
    doc["stages"][1]["last_error"] = '"><b>boom</b>'
    html = render_page(doc, {"broker": True})
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<b>boom</b>" not in html


def test_example_document_renders_every_section() -> None:
    html = render_page(example(), {"capture": True, "broker": True, "db:state": False})
    assert 'id="open-total" data-value="5">5<' in html
    assert 'data-pair="articles" data-kind="missing_in_target" data-status="open"' in html
    assert "cdc-repair rollback r-20261122-0001" in html
    assert 'data-dependency="db:state"' in html and "not ready" in html  # the failing dependency shows
    assert 'data-job="full_scan"' in html and "binlog.000003:48213" in html


def test_missing_or_odd_sections_render_as_not_available() -> None:
    for doc in ({}, {"stages": None, "inconsistencies": "?", "lag": {"source_seconds": {"a": "x"}},
                     "recent_repairs": [None, 3], "job_runs": {"not": "a list"}, "checkpoints": [{}]}):
        html = render_page(doc, {})
        assert 'id="binlog-lag">n/a<' in html
        assert "no repairs yet" in html or "data-repair" in html


def test_rollback_hint_only_for_applied_repairs() -> None:
    doc = example()
    doc["recent_repairs"] = [
        {"repair_id": "r-a", "status": "applied", "strategy": "forward"},
        {"repair_id": "r-f", "status": "failed", "strategy": "forward", "error": "guard"},
        {"repair_id": "r-r", "status": "applied", "strategy": "rollback"},  # a rollback is not rolled back
    ]
    html = render_page(doc, {})
    assert "cdc-repair rollback r-a" in html
    assert "cdc-repair rollback r-f" not in html and "cdc-repair rollback r-r" not in html


def test_problems_are_shown_in_a_banner() -> None:
    html = render_page({"errors": ["ledger: OperationalError: gone"]}, {}, error="status unavailable: X")
    assert 'id="problems"' in html and "ledger: OperationalError: gone" in html and "status unavailable: X" in html


def test_number_and_time_formatting() -> None:
    assert fmt_number(1234) == "1,234"
    assert fmt_number(0.84) == "0.8" and fmt_number(None) == "n/a" and fmt_number("abc") == "n/a"
    assert fmt_time(1795000000.0) == "2026-11-18 11:06:40Z"
    assert fmt_time("2026-11-22T05:00:00") == "2026-11-22 05:00:00" and fmt_time(None) == "—"


# ------------------------------------------------------------------ readiness and cache


def test_stage_readiness_from_the_status_document() -> None:
    stages = [{"name": "capture:a", "status": "stopped", "leader_only": True},
              {"name": "validate", "status": "backoff"}, {"name": "repair", "status": "running"},
              {"name": "x", "status": "running", "ready": False}]
    assert stage_readiness({"leader": False, "stages": stages}) == {"validate": False, "repair": True, "x": False}
    assert stage_readiness({"leader": True, "stages": stages})["capture:a"] is False
    assert stage_readiness(None) == {"status": False}


def test_status_cache_serves_the_previous_document_while_a_refresh_hangs() -> None:
    release = threading.Event()
    calls = []

    def provider() -> dict[str, Any]:
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)  # the second build hangs (a frozen state database)
        return {"n": len(calls)}

    cache = _StatusCache(provider, ttl_s=0.01)
    assert cache.get() == ({"n": 1}, None)
    time.sleep(0.02)
    slow = threading.Thread(target=cache.get)
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert cache.get() == ({"n": 1}, None)  # at once, not after the hung call
    assert time.monotonic() - started < 0.5
    release.set()
    slow.join(5)
    assert cache.get()[0] in ({"n": 2}, {"n": 3})


def test_history_points_are_rates_between_samples() -> None:
    a = Totals(at=100.0, lag_s=1.0, rows=1000, keys=10, open=3, repairs_applied=5, found=4)
    b = Totals(at=110.0, lag_s=2.0, rows=1500, keys=60, open=1, repairs_applied=7, found=6)
    assert point(None, a) == {"lag_s": 1.0, "open": 3, "rows_per_s": None, "keys_per_s": None,
                              "repairs_per_min": None, "found_per_min": None}
    assert point(a, b) == {"lag_s": 2.0, "open": 1, "rows_per_s": 50.0, "keys_per_s": 5.0, "repairs_per_min": 12.0,
                           "found_per_min": 12.0}
    # the ledger unreadable: the chart has a gap, not a 0
    assert point(b, Totals(at=120.0, lag_s=2.0, rows=1500, keys=60, open=None, repairs_applied=7))["open"] is None


def test_a_state_database_outage_reads_n_a_with_the_reason_never_zero() -> None:
    why = "state database mysql://cdc:***@127.0.0.1:3306/cdc_state: MySQL error 2003: Can't connect"
    doc = {"inconsistencies": {"open_total": None, "by_pair_kind": [], "unavailable": why},
           "repair_counts": None, "recent_repairs": None,
           "unavailable": {"ledger": why, "repair_counts": why, "recent_repairs": why, "scans": why}}
    html = render_page(doc, {"db:state": False})
    for card in ("open-total", "repairs-applied", "oldest-open"):
        assert re.search(f'id="{card}">n/a', html), card  # no data-value: nothing to read as a number
    escaped = why.replace("'", "&#x27;")
    assert f'id="open-total-why">{escaped}<' in html and f'id="repairs-applied-why">{escaped}<' in html
    assert html.count(f"n/a: {escaped}") >= 3  # the inconsistency, repair and scan tables say why too


# ------------------------------------------------------------------ the server


@pytest.fixture
def web() -> Any:
    server = start_web(WebConfig(port=0), example, lambda: {"a": True})
    yield server
    server.stop()


def test_routes_methods_and_static_files(web: Any) -> None:
    status, headers, body = get(f"{web.url}/static/uplot.iife.min.js")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript") and b"uPlot" in body
    assert get(f"{web.url}/static/../server.py")[0] == 404
    assert get(f"{web.url}/static/VENDORED.txt")[0] == 200
    status, headers, body = get(f"{web.url}/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100
    assert get(f"{web.url}/metrics", method="POST")[0] == 405
    status, headers, body = get(f"{web.url}/api/status")
    assert status == 200 and json.loads(body)["inconsistencies"]["open_total"] == 5
    assert headers["Cache-Control"] == "no-store"


def test_keep_alive_connection_serves_many_requests_quickly(web: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    latencies = []
    for _ in range(21):
        started = time.monotonic()
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b'{"status":"ok"}'
        latencies.append(time.monotonic() - started)
    conn.close()
    # with Nagle on, each response waits ~40 ms for the client's delayed ACK
    assert sorted(latencies)[10] < 0.02, f"keep-alive responses are delayed: median {sorted(latencies)[10]:.3f}s"


def test_a_failing_status_provider_gives_503_and_a_page_that_says_why() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("state database unreachable")

    server = start_web(WebConfig(port=0), broken, lambda: {"a": True})
    try:
        status, _, body = get(f"{server.url}/api/status")
        assert status == 503 and "state database unreachable" in json.loads(body)["error"]
        status, _, body = get(f"{server.url}/")
        assert status == 503 and b"state database unreachable" in body and b'id="open-total"' in body
    finally:
        server.stop()


def test_port_in_use_is_a_config_error_naming_the_address(web: Any) -> None:
    with pytest.raises(ConfigError, match=rf"web: cannot listen on 127.0.0.1:{web.port} .*web.port"):
        start_web(WebConfig(port=web.port), example, lambda: {})


def test_repairs_applied_counts_the_whole_log_when_the_document_has_it() -> None:
    from cdc_repair.web.values import repairs_applied

    doc = example()
    assert repairs_applied(doc) == 1  # only the recent list
    doc["repair_counts"] = [{"pair": "articles", "action": "insert", "status": "applied", "count": 70},
                            {"pair": "articles", "action": "update", "status": "applied", "count": 5},
                            {"pair": "articles", "action": "update", "status": "failed", "count": 2}]
    assert repairs_applied(doc) == 75
    assert 'id="repairs-applied" data-value="75">75<' in render_page(doc, {})


def test_ledger_gauge_stage_survives_a_failing_state_database(caplog: pytest.LogCaptureFixture) -> None:
    from cdc_repair import metrics
    from cdc_repair.observe import LedgerGaugeStage

    class Down:
        def connect(self) -> Any:
            raise ConnectionError("state database down")

    labels = {"stage": "observe", "kind": "ConnectionError"}
    errors = metrics.REGISTRY.get_sample_value("cdc_repair_errors_total", labels) or 0.0
    stage = LedgerGaugeStage(Down(), interval_s=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,), daemon=True)
    with caplog.at_level("ERROR", logger="cdc_repair.observe"):
        thread.start()
        time.sleep(0.3)
        stop.set()
        thread.join(2)
    assert not thread.is_alive()
    after = metrics.REGISTRY.get_sample_value("cdc_repair_errors_total", labels)
    assert after is not None and after - errors >= 5  # every failure counted
    assert len([r for r in caplog.records if "ledger gauges failed" in r.getMessage()]) == 1  # the stack once


def test_binds_ipv6_loopback_when_configured() -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = start_web(WebConfig(bind="::1", port=0), example, lambda: {"a": True})
    try:
        assert server.url == f"http://[::1]:{server.port}"
        assert get(f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()


def test_cards_show_reload_outcome_dead_letters_and_oldest_open() -> None:
    doc = example()
    doc["config"] = {"path": "/etc/c.yaml", "generation": 3,
                     "last_reload": {"ok": False, "at": 1795000000.0, "problems": ["pairs[0].key: required"]}}
    doc["dead_letters"] = {"topic": "dlq", "count": 4, "last_reason": "malformed: <b>bad</b>", "last_at": 1795000000.0}
    doc["inconsistencies"]["oldest_open_age_s"] = 3725.0
    doc["inconsistencies"]["oldest_open_pair"] = "articles"
    html = render_page(doc, {"x": True})
    assert 'id="config" data-value="3">generation 3' in html
    assert 'data-ok="False">last reload rejected 2026-11-18 11:06:40Z: pairs[0].key: required<' in html
    assert 'id="dead-letters" data-value="4">4' in html and "malformed: &lt;b&gt;bad&lt;/b&gt;" in html
    assert 'id="oldest-open" data-value="3725.0">1h 02m' in html
    doc["config"]["last_reload"] = {"ok": True, "at": 1795000000.0, "live": ["x"], "restart": ["kafka.partitions"]}
    assert "last reload ok 2026-11-18 11:06:40Z; needs restart: kafka.partitions" in render_page(doc, {"x": True})


def test_durations() -> None:
    from cdc_repair.web.values import fmt_duration

    assert [fmt_duration(v) for v in (None, 0, 59.6, 61, 3600, 90061)] == ["n/a", "0s", "1m 00s", "1m 01s",
                                                                            "1h 00m", "1d 01h"]


def test_a_running_scan_without_progress_is_flagged() -> None:
    doc = example()
    doc["scans"][0]["silent_s"] = 30.0
    assert "no progress for" not in render_page(doc, {"x": True})
    doc["scans"][0]["silent_s"] = 600.0
    assert "no progress for 10m 00s" in render_page(doc, {"x": True})
