"""/readyz of a real daemon whose capture cannot run (a login without replication grants): 503, and the
reasons name the failing stage and why, not just the dependency probes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import load_settings
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_readyz_names_the_stage_that_is_not_ready_and_why(demo_config: Any, mariadb: MariaDBServer,
                                                          tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    user = f"norepl_{tag}"
    mariadb.query(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{tag}'")
    mariadb.query(f"GRANT SELECT ON *.* TO '{user}'@'%'")  # logs in fine, may not read the binlog
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4900 + int(tag[:3], 16) % 90)
    raw["servers"]["capsrc"] = {"dsn": f"mysql://{user}:pw-{tag}@127.0.0.1:{mariadb.port}/"}
    raw["capture"][0]["server"] = "capsrc"
    port = process.free_port()
    raw["web"] = {"enabled": True, "bind": "127.0.0.1", "port": port}
    raw["ha"]["lock_retry_s"] = 0.5
    path = tmp_path / "norepl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    create_isolated_schema(load_settings(path))
    d = DaemonProcess(path, tmp_path / "norepl.log", name="norepl").start()
    try:
        assert d.wait_for_log("elected leader", 60), d.log_text()[-3000:]
        body: dict[str, Any] = {}
        end = time.monotonic() + 60
        while time.monotonic() < end:
            code, body = readyz(port)
            if code == 503 and body.get("not_ready") == ["capture"] and body.get("reasons", {}).get("capture"):
                break
            time.sleep(0.5)
        assert body.get("not_ready") == ["capture"], body
        reason = body["reasons"]["capture"]
        assert "capture" in body["reasons"] and reason, body
        assert "REPLICATION" in reason.upper() or "denied" in reason.lower(), reason
        assert f"pw-{tag}" not in json.dumps(body)
        # the embedded broker's end offsets are wrong (demo.yaml: kafka.end_offsets_exact: false): no number
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as resp:
            assert json.loads(resp.read())["lag"]["consumer_messages"] == "unknown"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert 'id="consumer-lag" data-value="unknown">unknown<' in resp.read().decode()
    finally:
        d.stop(30)
        mariadb.query(f"DROP USER '{user}'@'%'")


def test_a_missing_table_makes_run_not_ready_with_a_reason_and_one_log_line(demo_config: Any, mariadb: MariaDBServer,
                                                                           tmp_path: Path) -> None:
    """`cdc-repair run` whose target table does not exist: /readyz 503 naming the pair and the table, and the
    log says so once (not silence, not a line per probe)."""
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({}, name=f"base-{tag}.yaml")).read_text())
    raw = isolated_raw_config(raw, tag, server_id=4800 + int(tag[:3], 16) % 90)
    port = process.free_port()
    raw["web"] = {"enabled": True, "bind": "127.0.0.1", "port": port}
    raw["ha"]["lock_retry_s"] = 0.5
    path = tmp_path / "notable.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(path)
    create_isolated_schema(settings)
    pair = settings.pairs[0]
    mariadb.query(f"DROP TABLE `{pair.target.schema_name}`.`{pair.target.table_name}`")
    d = DaemonProcess(path, tmp_path / "notable.log", name="notable").start()
    try:
        assert d.wait_for_log("elected leader", 60), d.log_text()[-3000:]
        check = f"tables:{pair.name}"
        body: dict[str, Any] = {}
        end = time.monotonic() + 60
        while time.monotonic() < end:
            code, body = readyz(port)
            if code == 503 and check in body.get("not_ready", []):
                break
            time.sleep(0.5)
        assert code == 503 and check in body["not_ready"], body
        reason = body["reasons"][check]
        assert pair.target.table in reason and "does not exist" in reason and pair.target.server in reason, reason
        time.sleep(3)  # several probe rounds: still one log line
        lines = [ln for ln in d.log_text().splitlines() if pair.target.table in ln and "does not exist" in ln]
        assert len(lines) == 1, lines
        assert "Traceback" not in d.log_text()
        # the table created: ready again
        create_isolated_schema(settings)
        end = time.monotonic() + 60
        while time.monotonic() < end and check in readyz(port)[1].get("not_ready", [check]):
            time.sleep(0.5)
        assert check not in readyz(port)[1].get("not_ready", [check]), readyz(port)
    finally:
        d.stop(30)
