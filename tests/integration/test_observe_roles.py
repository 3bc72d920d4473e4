"""A leader and a standby (`cdc-repair run` subprocesses) as an operator sees them: /metrics scraped by a real
Prometheus, /readyz and /api/status. One `cdc_repair_stage_up` series per stage on each, with the role."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_prometheus import _ready, ensure_binary, query  # same folder (rootdir mode)

from cdc_repair.config import load_settings
from cdc_repair_dev.devservices import process
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def stage_up_series(metrics_text: str) -> list[dict[str, str]]:
    out = []
    for line in metrics_text.splitlines():
        m = re.match(r"cdc_repair_stage_up\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out.append({**labels, "value": m.group(2)})
    return out


@pytest.fixture
def pair_of_daemons(demo_config: Any, tmp_path: Path) -> Iterator[tuple[DaemonProcess, int, DaemonProcess, int]]:
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4600 + int(tag[:3], 16) % 300)
    raw["ha"]["lock_retry_s"] = 0.5
    raw["kafka"]["end_offsets_exact"] = True  # tansu's are not (see the broker module): the series, not the number
    raw["kafka"]["consumer"]["session_timeout_ms"] = 6000
    started: list[DaemonProcess] = []
    ports = []
    for name in ("leader", "standby"):
        port = process.free_port()
        ports.append(port)
        cfg = dict(raw, web={"enabled": True, "bind": "127.0.0.1", "port": port})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        if name == "leader":
            create_isolated_schema(load_settings(path))
        d = DaemonProcess(path, tmp_path / f"{name}.log", name=name).start()
        started.append(d)
        if name == "leader":
            assert d.wait_for_log("elected leader", 60), d.log_text()[-3000:]
    try:
        for d, port in zip(started, ports, strict=True):
            process.wait_until(lambda port=port: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout_s=60,
                               what=f"{d.name} /healthz", alive=d.alive, log_path=d.log_path)
        yield started[0], ports[0], started[1], ports[1]
    finally:
        for d in started:
            d.stop(30)


def start_prometheus(tmp_path: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    binary = ensure_binary("prometheus", "prometheus")
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config.pop("rule_files", None)
    config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = process.free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: _ready(url), timeout_s=30, what="prometheus", alive=lambda: proc.poll() is None,
                       log_path=tmp_path / "prometheus.log")
    return proc, url


def test_leader_and_standby_export_one_stage_series_each_with_the_role(
        pair_of_daemons: tuple[DaemonProcess, int, DaemonProcess, int], tmp_path: Path) -> None:
    _leader, lport, _standby, sport = pair_of_daemons
    proc, prom = start_prometheus(tmp_path, [f"127.0.0.1:{lport}", f"127.0.0.1:{sport}"])
    try:
        stages = [s["name"] for s in json.loads(get(f"http://127.0.0.1:{lport}/api/status")[1])["stages"]]
        assert "capture" in stages and "validate" in stages, stages
        for port, role in ((lport, "leader"), (sport, "standby")):
            series = stage_up_series(get(f"http://127.0.0.1:{port}/metrics")[1].decode())
            assert sorted(s["stage"] for s in series) == sorted(stages), (role, series)
            assert {s["role"] for s in series} == {role}, series
        deadline = time.monotonic() + 60
        found: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            found = {}
            for r in query(prom, "cdc_repair_stage_up"):
                found.setdefault(r["metric"]["instance"], []).append(r["metric"]["stage"])
            if len(found) == 2:
                break
            time.sleep(1)
        assert {i: sorted(s) for i, s in found.items()} == {
            f"127.0.0.1:{lport}": sorted(stages), f"127.0.0.1:{sport}": sorted(stages)}
        # consumer lag: a series per partition, and this daemon's number in /api/status
        deadline = time.monotonic() + 60
        lag: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(lag) < 3:
            lag = query(prom, "cdc_repair_validate_consumer_lag_messages")
            time.sleep(1)
        assert sorted(r["metric"]["partition"] for r in lag) == ["0", "1", "2"], lag
        for port in (lport, sport):
            doc = json.loads(get(f"http://127.0.0.1:{port}/api/status")[1])
            assert isinstance(doc["lag"]["consumer_messages"], int), doc["lag"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_healthy_standby_page_shows_its_role_and_who_leads(
        pair_of_daemons: tuple[DaemonProcess, int, DaemonProcess, int]) -> None:
    from test_web import Dom, chromium  # same folder (rootdir mode)

    leader, lport, _standby, sport = pair_of_daemons
    base = f"http://127.0.0.1:{sport}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and get(f"{base}/readyz")[0] != 200:
        time.sleep(0.5)
    assert get(f"{base}/readyz")[0] == 200, get(f"{base}/readyz")[1]
    doc = json.loads(get(f"{base}/api/status")[1])
    assert doc["role"] == "standby"
    holder = doc["leader_lock"]["holder"]
    assert holder["pid"] == leader.pid and holder["host"] and holder["since"]
    for html in (get(f"{base}/")[1].decode(), chromium(f"{base}/", "--virtual-time-budget=3000", "--dump-dom")):
        dom = Dom(html)
        assert dom.by_id("role")["text"].strip() == "standby"
        assert 'class="badge bad"' not in html, "a healthy standby shows nothing red"
        lock = dom.by_id("leader-lock")["text"]
        assert f"pid {leader.pid}" in lock and holder["host"] in lock
        stages = {e["data-stage"]: e["text"] for e in dom.having("data-stage")}
        assert "standby" in stages["capture"] and "standby" in stages["scheduler"]
    lead = json.loads(get(f"http://127.0.0.1:{lport}/api/status")[1])
    assert lead["role"] == "leader" and lead["leader_lock"]["holder"]["pid"] == leader.pid
    import sys

    text = subprocess.run([sys.executable, "-m", "cdc_repair", "--config", str(leader.config), "status"],
                          capture_output=True, text=True, timeout=60, check=False).stdout
    assert f"pid {leader.pid} since" in text, text
