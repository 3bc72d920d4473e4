"""The web endpoint against real services: readiness flips with the broker and the databases, the ledger gauges
follow the state tables, and the status page, loaded in a real headless Chromium, shows what /api/status says.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair import metrics
from cdc_repair.config import Settings, WebConfig, load_settings, settings_from_mapping
from cdc_repair.observe import LedgerGaugeStage, initialise_metric_labels, refresh_ledger_gauges
from cdc_repair.runtime.supervisor import StageSpec, Supervisor
from cdc_repair.stage import Stage
from cdc_repair.state import tables
from cdc_repair.state.engine import state_engine
from cdc_repair.web import WebServer, start_web
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------------ helpers


def fetch(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def readyz(web: WebServer) -> tuple[int, dict[str, Any]]:
    status, body = fetch(f"{web.url}/readyz")
    return status, json.loads(body)


def wait_readyz(web: WebServer, code: int, not_ready: list[str], timeout_s: float = 20.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status, body = readyz(web)
        return body if status == code and body["not_ready"] == not_ready else None

    result: dict[str, Any] = wait_for(check, timeout_s, f"/readyz {code} with not_ready={not_ready}")
    return result


def settings_for(db: MariaDBServer, broker: Broker, state_db: str) -> Settings:
    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for server in raw["servers"].values():
        server["dsn"] = db.dsn().to_url()
    raw["state"]["dsn"] = db.dsn(state_db).to_url()
    raw["kafka"]["bootstrap_servers"] = [broker.bootstrap]
    raw["web"] = {"bind": "127.0.0.1", "port": 0}
    return settings_from_mapping(raw)


# ------------------------------------------------------------------ readiness


@pytest.fixture(scope="module")
def own_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDBServer, Broker]]:
    """A MariaDB and a broker of this module only: the tests stop and freeze them."""
    base = tmp_path_factory.mktemp("web-deps")
    db = MariaDBServer(base / "db", server_id=71).start()
    broker = Broker(base / "broker").start()
    try:
        yield db, broker
    finally:
        broker.thaw()
        broker.stop()
        db.stop()


def test_healthz_and_readyz_follow_broker_database_and_stages(own_services: tuple[MariaDBServer, Broker]) -> None:
    db, broker = own_services
    from cdc_repair_dev.devservices.demo_schema import apply_sql, webook_sql

    db.root_connection().cursor().execute("CREATE DATABASE IF NOT EXISTS cdc_state_web")
    apply_sql(db.dsn(), webook_sql())  # the pair's tables (`tables:articles` checks they exist)
    settings = settings_for(db, broker, "cdc_state_web")
    stages = [{"name": "validate", "status": "running", "leader_only": False},
              {"name": "capture:author", "status": "stopped", "leader_only": True}]
    doc = {"leader": False, "stages": stages}
    web = start_web(settings, lambda: doc, status_cache_s=0, probe_interval_s=0.3)
    try:
        # a follower's stopped leader-only stage does not make it unready
        body = wait_readyz(web, 200, [])
        assert set(body["checks"]) == {"validate", "broker", "db:author", "db:online", "db:state", "tables:articles"}

        broker.freeze()  # hung broker: connections open, no answers
        body = wait_readyz(web, 503, ["broker"])
        assert broker.bootstrap in body["reasons"]["broker"] or "no answer" in body["reasons"]["broker"]
        started = time.monotonic()
        assert fetch(f"{web.url}/healthz")[0] == 200
        assert fetch(f"{web.url}/metrics")[0] == 200
        assert time.monotonic() - started < 2, "a hung broker must not slow the endpoint down"
        broker.thaw()
        wait_readyz(web, 200, [])

        broker.stop()  # broker gone
        wait_readyz(web, 503, ["broker"])
        broker.start()
        wait_readyz(web, 200, [])

        db.stop()  # every database (all three are on this server) down
        body = wait_readyz(web, 503, ["db:author", "db:online", "db:state"])  # not also tables:articles
        assert f"127.0.0.1:{db.port}" in body["reasons"]["db:state"] and db.password not in json.dumps(body)
        page = fetch(f"{web.url}/")[1].decode()
        assert "not ready" in page and body["reasons"]["db:author"] in page and db.password not in page
        assert fetch(f"{web.url}/healthz")[0] == 200  # alive: restarting us would not bring MySQL back
        db.start()
        wait_readyz(web, 200, [])

        stages[0]["status"] = "backoff"  # a stage failing and backing off
        wait_readyz(web, 503, ["validate"])
        doc["leader"] = True  # the leader must run its leader-only stages
        stages[0]["status"] = "running"
        wait_readyz(web, 503, ["capture:author"])
    finally:
        broker.thaw()
        web.stop()


def test_readyz_is_503_when_the_provider_fails() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("state database unreachable")

    web = start_web(WebConfig(port=0), lambda: {}, broken)
    try:
        status, body = readyz(web)
        assert status == 503 and "state database unreachable" in body["error"]
        assert fetch(f"{web.url}/healthz")[0] == 200
        status, _ = fetch(f"{web.url}/api/nothing")
        assert status == 404
    finally:
        web.stop()


# ------------------------------------------------------------------ ledger gauges


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def state(mariadb: MariaDBServer) -> Iterator[Any]:
    """A state database of this test only (its ledger, repair log, job runs)."""
    name = f"obs_{uuid.uuid4().hex[:10]}"
    engine = state_engine(mariadb.dsn(name))
    try:
        yield engine
    finally:
        engine.dispose()
        mariadb.root_connection().cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def seed_state(engine: Any, pair: str) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for i, (kind, status) in enumerate([("missing_in_target", "open")] * 3 + [("different", "failed")] * 2 +
                                       [("different", "repaired")] * 4 + [("extra_in_target", "repairing")]):
        rows.append({"pair": pair, "pk": json.dumps([str(i)]), "kind": kind, "columns": None, "detected_by": "stream",
                     "first_seen": now - dt.timedelta(seconds=120 - i), "last_seen": now, "seen_count": 1,
                     "status": status, "attempts": 0, "updated_at": now})
    repairs = [{"repair_id": f"r-{pair}-{i}", "run_id": "run-1", "pair": pair, "pk": json.dumps([str(i)]),
                "strategy": "forward", "action": "insert", "side": "target",
                "status": "applied" if i < 3 else "failed", "error": None if i < 3 else "guard: row changed",
                "created_at": now - dt.timedelta(seconds=10 * i), "updated_at": now} for i in range(4)]
    jobs = [{"job": "full_scan", "host": "h1", "started_at": now - dt.timedelta(minutes=5),
             "finished_at": now - dt.timedelta(minutes=4), "outcome": "ok", "detail": "rows=1000 diffs=2"},
            {"job": "window_scan", "host": "h1", "started_at": now - dt.timedelta(minutes=1),
             "finished_at": now - dt.timedelta(seconds=50), "outcome": "failed", "detail": "UnreachableError"}]
    checkpoint = {"source": "author", "binlog_file": "binlog.000002", "binlog_pos": 4711, "gtid_set": "0-11-99",
                  "event_ts": time.time() - 2.5, "updated_at": now}
    scans = [{"scan_id": "s-running", "pair": pair, "status": "running", "last_key": '["4000"]', "chunks": 4,
              "rows": 4000, "diffs": 1, "rows_total": 10000, "where_clause": None,
              "started_at": now - dt.timedelta(seconds=40), "updated_at": now, "finished_at": None},
             {"scan_id": "s-done", "pair": f"{pair}_done", "status": "done", "last_key": None, "chunks": 2,
              "rows": 2000, "diffs": 0, "rows_total": 1990, "where_clause": None,
              "started_at": now - dt.timedelta(seconds=300), "updated_at": now - dt.timedelta(seconds=290),
              "finished_at": now - dt.timedelta(seconds=290)}]
    with engine.begin() as conn:
        conn.execute(tables.scan_progress.insert(), scans)
        conn.execute(tables.inconsistency.insert(), rows)
        conn.execute(tables.repair_log.insert(), repairs)
        conn.execute(tables.job_run.insert(), jobs)
        conn.execute(tables.checkpoint.insert(), [checkpoint])


def test_ledger_gauges_follow_the_state_tables(state: Any) -> None:
    pair = f"p{uuid.uuid4().hex[:6]}"
    seed_state(state, pair)
    snapshot = refresh_ledger_gauges(state)
    assert snapshot.by_pair_kind() == {(pair, "missing_in_target"): 3, (pair, "different"): 2,
                                       (pair, "extra_in_target"): 1}
    web = start_web(WebConfig(port=0), lambda: {}, lambda: {"x": True})
    try:
        text = fetch(f"{web.url}/metrics")[1].decode()
        gauge = "cdc_repair_ledger_open_inconsistencies"
        assert metric_value(text, gauge, pair=pair, kind="missing_in_target", status="open") == 3
        assert metric_value(text, gauge, pair=pair, kind="different", status="failed") == 2
        assert metric_value(text, gauge, pair=pair, kind="extra_in_target", status="repairing") == 1
        assert metric_value(text, gauge, pair=pair, kind="different", status="repaired") is None  # final: not open
        age = metric_value(text, "cdc_repair_ledger_oldest_open_age_seconds", pair=pair)
        assert age is not None and 115 <= age <= 200
        last_ok = metric_value(text, "cdc_repair_job_last_success_timestamp_seconds", job="full_scan")
        assert last_ok is not None and abs(time.time() - 240 - last_ok) < 30

        # everything repaired: the series stay, at 0 (a dashboard shows 0, not "no data")
        with state.begin() as conn:
            conn.execute(tables.inconsistency.update().values(status="repaired"))
        stage = LedgerGaugeStage(state, interval_s=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=stage.run, args=(stop,), daemon=True)
        thread.start()
        wait_for(lambda: stage.last is not None and stage.last.open_total == 0, 10, "a refresh by the stage")
        stop.set()
        thread.join(5)
        text = fetch(f"{web.url}/metrics")[1].decode()
        assert metric_value(text, gauge, pair=pair, kind="missing_in_target", status="open") == 0
        assert metric_value(text, "cdc_repair_ledger_oldest_open_age_seconds", pair=pair) == 0
    finally:
        web.stop()


# ------------------------------------------------------------------ the page in a real browser


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and this is not root: sudo apt-get install -y chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "fonts-dejavu-core"]):
        if subprocess.run(argv, env=env, capture_output=True, check=False, timeout=900).returncode != 0:
            pytest.skip("cannot install chromium with apt")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium installed but not on PATH")
    return found


def chromium(url: str, *args: str, timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Dom(HTMLParser):
    """Elements with an id or a data-* attribute, with their attributes and text content."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[tuple[str, dict[str, Any]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element: dict[str, Any] = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": "", "cells": []}
        if any(k == "id" or k.startswith("data-") for k, _ in attrs):
            self.elements.append(element)
        if tag == "td":
            row = next((e for t, e in reversed(self._open) if t == "tr"), None)
            if row is not None:
                row["cells"].append(element)
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element in self._open:
            element["text"] += data

    def by_id(self, ident: str) -> dict[str, Any]:
        return next(e for e in self.elements if e.get("id") == ident)

    def having(self, attr: str) -> list[dict[str, Any]]:
        return [e for e in self.elements if attr in e]


class _Idle(Stage):
    """A stage that runs until stopped (the page test needs running stages, not their work)."""

    def run(self, stop_event: threading.Event) -> None:
        stop_event.wait()


class _Daemon:
    """What build_status reads from a running daemon: its supervisor's stages, identity and leadership."""

    host = "cdc-repair-1"
    is_leader = True

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.started_at = time.time()

    def status(self) -> dict[str, Any]:
        return {"host": self.host, "started_at": self.started_at, "leader": True, "leader_since": self.started_at,
                "stages": self.supervisor.states(), "config": {"path": None, "generation": 1, "last_reload": None}}


@pytest.fixture
def status_site(state: Any, demo_config: Any, mariadb: MariaDBServer) -> Iterator[tuple[WebServer, dict[str, Any]]]:
    """The web server serving the real status document (runtime/status.py) over a seeded state database."""
    from cdc_repair.runtime.status import build_status
    from cdc_repair_dev.devservices.demo_schema import apply_sql, webook_sql

    chromium_binary()
    apply_sql(mariadb.dsn(), webook_sql())  # the demo pair's tables (readiness checks that they exist)
    state_db = state.url.database
    path = demo_config({"state": {"dsn": mariadb.dsn(state_db).to_url()}, "web": {"bind": "127.0.0.1", "port": 0}})
    settings = load_settings(path)
    seed_state(state, "articles")
    initialise_metric_labels(["articles"], sources=["author"])
    refresh_ledger_gauges(state)
    supervisor = Supervisor([StageSpec(name, _Idle, leader_only=name.startswith(("capture", "scheduler")))
                             for name in ("capture:author", "validate", "repair", "scheduler")])
    supervisor.start_all(leader=True)
    daemon = _Daemon(supervisor)
    web = start_web(settings, lambda: build_status(settings, state, daemon), status_cache_s=600,
                    history_interval_s=0.3, engine=state)
    stop = threading.Event()

    def workload() -> None:  # some movement for the charts
        i = 0
        while not stop.wait(0.1):
            i += 1
            metrics.CAPTURED_ROWS.labels(table="webook_author.articles", type="UPDATE").inc(50 + (i * 37) % 90)
            metrics.KEYS_CHECKED.labels(pair="articles", origin="stream").inc(40 + (i * 13) % 60)
            metrics.BINLOG_LAG_SECONDS.labels(source="author").set(0.4 + (i % 17) / 10)

    thread = threading.Thread(target=workload, daemon=True)
    thread.start()
    try:
        time.sleep(3)
        yield web, json.loads(fetch(f"{web.url}/api/status")[1])
    finally:
        stop.set()
        thread.join(2)
        web.stop()
        supervisor.stop_all(5)


def assert_page_matches(dom: Dom, doc: dict[str, Any]) -> None:
    """The page's numbers are the status document's."""
    inc = doc["inconsistencies"]
    total = dom.by_id("open-total")
    assert total["data-value"] == str(inc["open_total"]) and total["text"].strip() == str(inc["open_total"])
    shown = {(e["data-pair"], e["data-kind"], e["data-status"]): e for e in dom.having("data-kind")}
    expected = {(g["pair"], g["kind"], g["status"]): g["count"] for g in inc["by_pair_kind"]}
    assert {k: int(e["cells"][-1]["text"]) for k, e in shown.items()} == expected
    assert expected == {("articles", "missing_in_target", "open"): 3, ("articles", "different", "failed"): 2,
                        ("articles", "extra_in_target", "repairing"): 1}

    lag = max(doc["lag"]["source_seconds"].values())
    assert float(dom.by_id("binlog-lag")["data-value"]) == pytest.approx(lag)
    assert dom.by_id("binlog-lag")["text"].strip() == f"{lag:,.1f}"

    repairs = {e["data-repair"]: e for e in dom.having("data-repair")}
    assert set(repairs) == {r["repair_id"] for r in doc["recent_repairs"]}
    for r in doc["recent_repairs"]:
        hint = f"cdc-repair rollback {r['repair_id']}"
        assert (hint in repairs[r["repair_id"]]["text"]) == (r["status"] == "applied")
    applied = sum(c["count"] for c in doc["repair_counts"] if c["status"] == "applied")
    assert dom.by_id("repairs-applied")["text"].strip() == str(applied) == "3"

    jobs = [e["data-job"] for e in dom.having("data-job")]
    assert jobs == [j["job"] for j in doc["job_runs"]] == ["window_scan", "full_scan"]
    last = {e["data-last-job"]: e["cells"][1]["text"] for e in dom.having("data-last-job")}
    assert last == {name: j["outcome"] for name, j in doc["last_job_runs"].items()}
    assert last == {"full_scan": "ok", "window_scan": "failed"}

    assert dom.by_id("dead-letters")["data-value"] == str(doc["dead_letters"]["count"]) == "0"
    assert dom.by_id("config")["data-value"] == str(doc["config"]["generation"])
    assert "no reload since start" in dom.by_id("config-reload")["text"]

    # the oldest open inconsistency (seeded 120 s before the document)
    oldest = dom.by_id("oldest-open")
    assert float(oldest["data-value"]) == doc["inconsistencies"]["oldest_open_age_s"]
    assert 115 <= doc["inconsistencies"]["oldest_open_age_s"] < 300 and "pair articles" in oldest["text"]

    # full-scan progress: rows done of the estimated total, rate, ETA, as in the document
    scans = {e["data-scan-pair"]: e for e in dom.having("data-scan-pair")}
    assert set(scans) == {s["pair"] for s in doc["scans"]} == {"articles", "articles_done"}
    running = next(s for s in doc["scans"] if s["pair"] == "articles")
    assert (running["status"], running["rows"], running["rows_total"], running["progress"]) == (
        "running", 4000, 10000, 0.4)
    assert 40 <= running["rows_per_s"] <= 100 + 4000 / 40 and running["eta_s"] > 0
    cells = scans["articles"]["cells"]
    assert cells[2]["text"] == "4,000 of 10,000 (40%)" and cells[2]["data-rows-total"] == "10000"
    assert float(cells[3]["data-value"]) == running["rows_per_s"]
    assert float(cells[4]["data-value"]) == running["eta_s"]
    done = next(s for s in doc["scans"] if s["pair"] == "articles_done")
    assert done["eta_s"] is None and done["rows_per_s"] == 200.0 and scans["articles_done"]["cells"][4]["text"] == "—"
    checkpoint = next(e for e in dom.having("data-source") if e["data-source"] == "author")
    assert "binlog.000002:4711" in checkpoint["text"]
    deps = {e["data-dependency"] for e in dom.having("data-dependency")}
    assert {"broker", "db:state"} <= deps
    stages = {e["data-stage"]: e["cells"][1]["text"] for e in dom.having("data-stage")}
    assert stages == {s["name"]: s["status"] for s in doc["stages"]}
    assert set(stages) == {"capture:author", "validate", "repair", "scheduler"}


def test_status_page_in_chromium_shows_the_api_numbers(status_site: tuple[WebServer, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    web, doc = status_site
    assert doc["inconsistencies"]["open_total"] == 6
    # the HTML as served is what a browser without JavaScript shows; the DOM Chromium built after running the
    # page's script (charts, refresh) must show the same numbers
    served = fetch(f"{web.url}/")[1].decode()
    live = chromium(f"{web.url}/", "--virtual-time-budget=4000", "--dump-dom")
    for dom in (Dom(served), Dom(live)):
        assert_page_matches(dom, doc)
    # the vendored uPlot drew the charts (this server is the only network the page used)
    assert live.count('class="uplot') == 3, "the three charts did not render"
    shot = tmp_path / "status-page.png"
    chromium(f"{web.url}/", "--virtual-time-budget=4000", "--window-size=1280,1900", "--hide-scrollbars",
             f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # refresh the README's picture
        shutil.copyfile(shot, ROOT / "docs" / "status-page.png")


def test_page_script_refreshes_the_numbers_in_place() -> None:
    """With JavaScript, the numbers follow the server without a reload (every page.REFRESH_S seconds)."""
    chromium_binary()
    calls = {"n": 0}

    def provider() -> dict[str, Any]:
        calls["n"] += 1
        return {"inconsistencies": {"open_total": 100 + calls["n"], "by_pair_kind": []}}

    web = start_web(WebConfig(port=0), provider, lambda: {"x": True}, status_cache_s=0)
    try:
        live = Dom(chromium(f"{web.url}/", "--virtual-time-budget=12000", "--dump-dom"))
        first_served = 101
        shown = int(live.by_id("open-total")["data-value"])
        assert shown > first_served, f"the page kept the number it was served with ({shown})"
        assert shown <= calls["n"] + 100
    finally:
        web.stop()


def test_state_database_down_page_says_n_a_and_why(own_services: tuple[MariaDBServer, Broker]) -> None:
    """With the state database stopped, the cards and tables say n/a and why (never 0 open / 0 repairs), in the
    served HTML and in Chromium, matching /api/status; /metrics drops the ledger series and says ledger_up 0."""
    from cdc_repair.runtime.status import build_status

    chromium_binary()
    db, broker = own_services
    state_db = f"web_down_{uuid.uuid4().hex[:6]}"
    settings = settings_for(db, broker, state_db)
    engine = state_engine(settings.state.dsn)
    pair = f"down{uuid.uuid4().hex[:5]}"
    seed_state(engine, pair)
    supervisor = Supervisor([StageSpec(name, _Idle) for name in ("validate", "repair")])
    supervisor.start_all(leader=True)
    daemon = _Daemon(supervisor)
    web = start_web(settings, lambda: build_status(settings, engine, daemon), status_cache_s=0,
                    probe_interval_s=0.3, ledger_refresh_s=0.3, engine=engine)
    gauge = "cdc_repair_ledger_open_inconsistencies"
    try:
        wait_for(lambda: metric_value(fetch(f"{web.url}/metrics")[1].decode(), gauge, pair=pair, kind="different",
                                      status="failed") == 2, 30, "the ledger gauges")
        up = json.loads(fetch(f"{web.url}/api/status")[1])
        assert up["inconsistencies"]["open_total"] == 6 and up["unavailable"] == {}
        db.stop()
        doc = wait_for(lambda: (d := json.loads(fetch(f"{web.url}/api/status")[1]))["unavailable"] and d, 30,
                       "the status document to notice the state database is down")
        why = doc["unavailable"]["ledger"]
        assert f"127.0.0.1:{db.port}" in why and db.password not in json.dumps(doc), why
        assert doc["inconsistencies"]["open_total"] is None and doc["inconsistencies"]["unavailable"] == why
        assert doc["repair_counts"] is None and doc["recent_repairs"] is None
        def withdrawn() -> str | None:
            found = fetch(f"{web.url}/metrics")[1].decode()
            return found if metric_value(found, "cdc_repair_ledger_up") == 0 else None

        text = wait_for(withdrawn, 30, "ledger_up 0")
        assert metric_value(text, gauge, pair=pair) is None, "no stale or zero ledger series while unreadable"
        assert metric_value(text, "cdc_repair_ledger_oldest_open_age_seconds", pair=pair) is None
        served = fetch(f"{web.url}/")[1].decode()
        live = chromium(f"{web.url}/", "--virtual-time-budget=3000", "--dump-dom")
        for dom in (Dom(served), Dom(live)):
            for card in ("open-total", "repairs-applied", "oldest-open"):
                assert dom.by_id(card)["text"].startswith("n/a"), (card, dom.by_id(card)["text"])
                assert "data-value" not in dom.by_id(card)
            assert f"127.0.0.1:{db.port}" in dom.by_id("open-total-why")["text"]
            assert dom.by_id("inconsistencies-empty")["text"].startswith("n/a: ")
            assert dom.by_id("repairs-empty")["text"].startswith("n/a: ")
            assert db.password not in served and db.password not in live
    finally:
        if not db.is_running():
            db.start()
        web.stop()
        supervisor.stop_all(5)
        engine.dispose()
