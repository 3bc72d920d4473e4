"""A real Prometheus scrapes the real daemon (`cdc-repair run`, a subprocess) while a webook workload runs.

The daemon has its own schemas, topic, consumer group, state database and lock, so it sees only this test's
traffic. The test checks the service is scraped, `/readyz` says ready, and the dashboard panels fed by the
stages this workload exercises (capture, validate, runtime) return data. Panels that need faults (dead
letters, produce errors, purged binlogs, dirty rollbacks) are covered by test_prometheus.py's workload.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_prometheus import _has_number, _ready, dashboard_exprs, ensure_binary, query  # same folder (rootdir mode)

from cdc_repair.config import load_settings
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.demo_schema import apply_sql, webook_sql
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess
from cdc_repair_dev.workload import Workload, WorkloadConfig

ROOT = Path(__file__).resolve().parents[2]

# Metrics the daemon must export under a plain publish workload (no faults injected), by the stage feeding them.
ALWAYS = ("cdc_repair_build_info", "cdc_repair_stage_up", "cdc_repair_leader",
          # bounded labels the web server initialises at 0 (observe.initialise_metric_labels)
          "cdc_repair_stage_restarts_total", "cdc_repair_repair_rollbacks_total")
BY_STAGE = {
    "capture": ("cdc_repair_source_rows_total", "cdc_repair_source_events_total", "cdc_repair_source_lag_seconds",
                "cdc_repair_source_checkpoints_total", "cdc_repair_sink_produce_latency_seconds_bucket"),
    "validate": ("cdc_repair_validate_keys_checked_total", "cdc_repair_validate_verdicts_total"),
    "scheduler": ("cdc_repair_job_runs_total", "cdc_repair_job_last_success_timestamp_seconds"),
}


def expected_metrics(stages: list[str]) -> list[str]:
    """What the running stages (names from /api/status, e.g. capture:author) must export."""
    out = list(ALWAYS)
    for stage in stages:
        out += BY_STAGE.get(stage.split(":")[0], ())
    return out


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture
def daemon_config(demo_config: Any, mariadb: MariaDBServer) -> tuple[Path, int]:
    tag = uuid.uuid4().hex[:8]
    author, online = f"obs_author_{tag}", f"obs_online_{tag}"
    dsn = mariadb.dsn()
    apply_sql(dsn, webook_sql().replace("webook_author", author).replace("webook_online", online))
    port = process.free_port()
    raw_pair = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["pairs"][0]
    raw_pair["source"]["table"] = f"{author}.articles"
    raw_pair["target"]["table"] = f"{online}.published_articles"
    path = demo_config({
        "state": {"dsn": mariadb.dsn(f"obs_state_{tag}").to_url()},
        "capture": [{"server": "author", "server_id": 5000 + int(tag[:4], 16) % 1000,
                     "include": [f"{author}.articles", f"{online}.published_articles"], "start": "current"}],
        "kafka": {"bootstrap_servers": yaml.safe_load(demo_config().read_text())["kafka"]["bootstrap_servers"],
                  "topic": {"mode": "single", "name": f"obs-rows-{tag}"}, "partitions": 3,
                  "dead_letter_topic": f"obs-dlq-{tag}", "consumer": {"group_id": f"obs-{tag}"}},
        "pairs": [raw_pair],
        "validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.2, "rechecks": 1},
        "scheduler": {"full_scan_cron": "0 3 * * *", "window_scan_interval_s": 3600, "retry_interval_s": 1,
                      "lag_check_interval_s": 1},
        "ha": {"lock_name": f"obs-{tag}", "lock_retry_s": 0.5},
        "web": {"enabled": True, "bind": "127.0.0.1", "port": port},
    }, name=f"daemon-{tag}.yaml")
    return path, port


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    binary = ensure_binary("prometheus", "prometheus")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["rule_files"] = [str(ROOT / "docker" / "alerts.yml")]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = process.free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
        procs.append(subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                      stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: _ready(url), timeout_s=30, what="prometheus",
                           alive=lambda: procs[-1].poll() is None, log_path=tmp_path / "prometheus.log")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prometheus_scrapes_the_daemon_under_a_workload(daemon_config: tuple[Path, int], prometheus_for: Any,
                                                        tmp_path: Path) -> None:
    config, port = daemon_config
    daemon = DaemonProcess(config, tmp_path / "daemon.log", name="observed").start()
    stop = threading.Event()
    try:
        base = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout_s=60, what="the daemon's /healthz",
                           alive=daemon.alive, log_path=tmp_path / "daemon.log")
        prom = prometheus_for(f"127.0.0.1:{port}")
        process.wait_until(lambda: _get(f"{base}/readyz")[0] == 200, timeout_s=60,
                           what=f"the daemon's /readyz (last: {_get(f'{base}/readyz')[1][:300]!r})",
                           alive=daemon.alive, log_path=tmp_path / "daemon.log")

        settings = load_settings(config)
        workload = Workload(settings, WorkloadConfig(rate_per_s=40, publish_fail_share=0.3, corrupt_share=0.05,
                                                     seed=7, first_id=1))
        thread = threading.Thread(target=workload.run, args=(stop, 20), daemon=True)
        thread.start()

        stages = [s["name"] for s in json.loads(_get(f"{base}/api/status")[1])["stages"]]
        assert any(s.startswith("capture") for s in stages), stages
        wanted = expected_metrics(stages)
        exprs = dashboard_exprs()
        expected = [(t, e) for t, e in exprs if any(m in e for m in wanted)]
        assert {m for m in wanted if any(m in e for _t, e in expected)} == set(wanted)
        deadline = time.monotonic() + 60
        empty: list[str] = []
        while time.monotonic() < deadline:
            empty = [f"{t}: {e}" for t, e in expected if not _has_number(query(prom, e))]
            if not empty:
                break
            time.sleep(1)
        without_data = [t for t, e in exprs if not _has_number(query(prom, e))]
        (tmp_path / "panels-without-data.json").write_text(json.dumps(without_data, indent=1))
        assert empty == [], ("panels without data from the daemon:\n" + "\n".join(empty) +
                             f"\n(all panels without data: {without_data})\n" + daemon.log_text()[-3000:])
        if "validate" not in stages:  # say so in the run's output until the stream validator stage lands
            print(f"note: the daemon runs {stages}; validate panels were not required")
    finally:
        stop.set()
        daemon.stop(30)
