"""A real Prometheus scrapes cdc-repair's /metrics, and every expression of every Grafana panel returns data.

Prometheus is Debian's `prometheus` package (installed with apt when missing and running as root, as
.ci/run does). The scraped endpoint is the service's own web server (`cdc_repair.web.start_web`) while a
workload drives every metric of the catalogue through the same metric objects the stages use, so a panel
querying a metric or label that does not exist fails here, not in front of an operator.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair import metrics
from cdc_repair.config import WebConfig
from cdc_repair.observe import initialise_metric_labels
from cdc_repair.web import start_web
from cdc_repair_dev.devservices import process

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "cdc-repair.json"
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$pair": ".*"}

LABEL_VALUES = {"pair": "articles", "table": "webook_author.articles", "type": "INSERT", "kind": "different",
                "stage": "validate", "strategy": "forward", "outcome": "applied", "source": "author",
                "job": "full_scan", "origin": "stream", "status": "open", "scan": "full", "result": "match",
                "reason": "timeout", "topic": "cdc-repair.rows", "partition": "0"}


def ensure_binary(binary: str, package: str) -> str:
    """Path of `binary`; installs the Debian `package` with apt when missing and root, else skips (with why)."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"{binary} is not installed and this is not root: sudo apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"cannot install {package} with apt: {done.stderr.strip()[-300:]}")
    found = shutil.which(binary)
    if not found:
        pytest.skip(f"{package} installed but {binary} is not on PATH")
    return found


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


class Workload:
    """Drives every metric of the catalogue through its metric object, like the stages do, until stopped."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-workload", daemon=True)
        self.objects = [getattr(metrics, n) for n in dir(metrics) if type(getattr(metrics, n)).__name__ in
                        ("Counter", "Gauge", "Histogram", "Info")]

    def start(self) -> Workload:
        initialise_metric_labels(["articles"], sources=["author"])  # what the daemon does at start
        self.tick(0)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        i = 1
        while not self.stop_event.wait(0.2):
            self.tick(i)
            i += 1

    def tick(self, i: int) -> None:
        for obj in self.objects:
            kind = type(obj).__name__
            names = getattr(obj, "_labelnames", ())
            child = obj.labels(**{n: LABEL_VALUES.get(n, "x") for n in names}) if names else obj
            if kind == "Counter":
                child.inc(1 + i % 3)
            elif kind == "Gauge":
                child.set((i % 10) / 10 if "ratio" in obj._name else 1 + i % 5)
            elif kind == "Histogram":
                child.observe(0.003 * (1 + i % 7))
            elif kind == "Info" and obj is not metrics.BUILD_INFO:
                child.info({"file": "binlog.000001", "position": str(4 + i), "gtid": f"0-11-{i}"})


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus (1 s scrapes) scraping a running cdc-repair web server under a workload; yields its URL."""
    binary = ensure_binary("prometheus", "prometheus")
    workload = Workload().start()
    web = start_web(WebConfig(port=0), lambda: {"stages": []}, lambda: {"test": True}, history_interval_s=1.0)
    tmp = tmp_path_factory.mktemp("prometheus")
    # docker/prometheus.yml with the target and interval changed: the shipped config is what runs here
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ROOT / "docker" / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{web.port}"]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = process.free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=open(tmp / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - closed with proc
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: _ready(url), timeout_s=30, what="prometheus", alive=lambda: proc.poll() is None,
                           log_path=tmp / "prometheus.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        web.stop()
        workload.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def query(url: str, expr: str) -> list[dict[str, Any]]:
    doc = get_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def test_prometheus_scrapes_the_service(scraped: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = query(scraped, 'up{job="cdc-repair"}')
        if up and up[0]["value"][1] == "1":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"prometheus never scraped the service: {get_json(f'{scraped}/api/v1/targets')}")
    assert query(scraped, 'cdc_repair_build_info{version!=""}')


def test_every_dashboard_expression_returns_data(scraped: str) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 30
    deadline = time.monotonic() + 45
    empty: list[str] = []
    while time.monotonic() < deadline:
        empty = [f"{title}: {expr}" for title, expr in exprs if not _has_number(query(scraped, expr))]
        if not empty:
            break
        time.sleep(1)
    assert empty == [], "panels whose query returns no data:\n" + "\n".join(empty)


def test_pair_variable_query_lists_the_pair(scraped: str) -> None:
    """The dashboard's $pair variable (label_values of keys_checked) finds the configured pair."""
    doc = get_json(f"{scraped}/api/v1/label/pair/values?"
                   f"{urllib.parse.urlencode({'match[]': 'cdc_repair_validate_keys_checked_total'})}")
    assert "articles" in doc["data"]


def test_alert_rules_load_and_evaluate(scraped: str) -> None:
    """docker/alerts.yml loads in the real Prometheus and every rule evaluates without error."""

    def rules() -> list[dict[str, Any]]:
        groups = get_json(f"{scraped}/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        loaded = rules()
        if loaded and all(r.get("lastEvaluation", "").startswith("20") and r["health"] == "ok" for r in loaded):
            break
        time.sleep(0.5)
    loaded = rules()
    declared = [r["alert"] for g in yaml.safe_load((ROOT / "docker" / "alerts.yml").read_text())["groups"]
                for r in g["rules"] if "alert" in r]
    assert sorted(r["name"] for r in loaded) == sorted(declared)
    assert [r["name"] for r in loaded if r["health"] != "ok"] == [], [r.get("lastError") for r in loaded]
    state = {r["name"]: r["state"] for r in loaded}
    assert state["CdcRepairDown"] == "inactive" and state["CdcRepairNoLeader"] == "inactive"
