"""Daemons as real subprocesses (`cdc-repair --config X run`), for integration tests, the soak test and bench.

Running them as processes makes faults real: `kill()` is SIGKILL (no cleanup, the leader lock goes away only
because the server sees the connection close), `terminate()` is the operator's SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_repair_dev.devservices import process


@dataclass
class DaemonProcess:
    config: Path
    log_path: Path
    name: str = "daemon"
    extra_env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = dict(os.environ, CDC_REPAIR_LOG__FORMAT="json", PYTHONUNBUFFERED="1", **self.extra_env)
        argv = [sys.executable, "-m", "cdc_repair", "--config", str(self.config), "run", *self.args]
        self.proc = process.spawn(argv, self.log_path, detach=False, env=env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)

    def hup(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(10)

    def wait(self, timeout_s: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it did not exit in time; returns the exit code."""
        self.terminate()
        code = self.wait(timeout_s)
        if code is None:
            self.kill()
        return code

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        out = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(line))
        return out

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_for_log(self, needle: str, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            if not self.alive():
                return needle in self.log_text()
            time.sleep(0.1)
        return False


def isolated_raw_config(raw: dict[str, Any], tag: str, *, server_id: int) -> dict[str, Any]:
    """The demo config with everything renamed by `tag` (schemas, state db, topics, group, lock, server id)
    so several tests share one MariaDB and one broker without seeing each other."""
    out: dict[str, Any] = json.loads(json.dumps(raw))
    author, online = f"wa_{tag}", f"wo_{tag}"
    pair = out["pairs"][0]
    pair["source"]["table"] = f"{author}.articles"
    pair["target"]["table"] = f"{online}.published_articles"
    state_dsn = out["state"]["dsn"]
    out["state"]["dsn"] = state_dsn.rsplit("/", 1)[0] + f"/cdc_{tag}"
    for cap in out.get("capture", []):
        cap["include"] = [f"{author}.articles", f"{online}.published_articles"]
        cap["server_id"] = server_id
    out["kafka"]["topic"] = {"mode": "single", "name": f"rows-{tag}"}
    out["kafka"]["dead_letter_topic"] = f"dlq-{tag}"
    out["kafka"].setdefault("consumer", {})["group_id"] = f"validator-{tag}"
    out["ha"] = {**out.get("ha", {}), "lock_name": f"cdc-{tag}"}
    return out


def create_isolated_schema(settings: Any) -> None:
    """webook.sql with the pair's schema names (see `isolated_raw_config`)."""
    from cdc_repair_dev.devservices.demo_schema import apply_sql, webook_sql

    pair = settings.pairs[0]
    sql = webook_sql().replace("webook_author", pair.source.schema_name).replace(
        "webook_online", pair.target.schema_name)
    apply_sql(settings.server_dsn(pair.source.server), sql)
