"""Embedded services leave no orphans, and `cdc-repair dev up|status|down` manages them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cdc_repair_dev.devservices.process import pid_alive, port_open

_CHILD = """
import sys, json, pathlib, time
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.devservices.broker import Broker
root = pathlib.Path(sys.argv[1])
db = MariaDBServer(root / "db", server_id=31).start()
b = Broker(root / "broker").start()
print(json.dumps({"db": db.pid, "broker": b.pid, "port": db.port}), flush=True)
time.sleep(600)
"""


def _wait_gone(pids: list[int], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_services_die_with_a_killed_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    info = json.loads(parent.stdout.readline())
    assert pid_alive(info["db"]) and pid_alive(info["broker"])
    os.kill(parent.pid, signal.SIGKILL)  # like a test run killed hard
    parent.wait()
    assert _wait_gone([info["db"], info["broker"]]), "embedded services outlived their parent"
    assert not port_open(info["port"])


def test_dev_up_status_env_down(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cdc_repair", *args, "--dir", str(tmp_path / "dev")],
                              capture_output=True, text=True, timeout=120, check=False)

    up = cli("dev", "up")
    assert up.returncode == 0, up.stderr
    status = json.loads(subprocess.run([sys.executable, "-m", "cdc_repair", "--json", "dev", "status", "--dir",
                                        str(tmp_path / "dev")], capture_output=True, text=True, check=True).stdout)
    try:
        assert status["mariadb"]["running"] and status["mariadb"]["accepting"]
        assert status["broker"]["running"] and status["broker"]["accepting"]
        env = dict(line.removeprefix("export ").split("=", 1) for line in cli("dev", "env").stdout.splitlines())
        assert env["CDC_REPAIR_DEV_MARIADB_PORT"] == str(status["mariadb"]["port"])
        assert env["CDC_REPAIR_DEV_BROKER_PORT"] == str(status["broker"]["port"])
        again = cli("dev", "up")  # idempotent: reuses the running stack
        assert f"port {status['mariadb']['port']}  pid {status['mariadb']['pid']}" in again.stdout
    finally:
        down = cli("dev", "down")
    assert down.returncode == 0
    assert _wait_gone([status["mariadb"]["pid"], status["broker"]["pid"]])
    assert "not started" in cli("dev", "status").stdout
