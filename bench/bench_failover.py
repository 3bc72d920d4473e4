"""Leader takeover time after `kill -9` of the leader daemon; prints one JSON document.

Two `cdc-repair run` processes share one MariaDB (the leader lock is a MySQL named lock) and one broker. Each
round kills the leader with SIGKILL and measures until the standby logs "elected leader". The baseline in the
same run is the configured `ha.lock_retry_s` (a standby retries GET_LOCK that often, so the expected takeover is
between 0 and lock_retry_s plus the server noticing the closed socket): the ratio says how much the daemon adds.

    .venv/bin/python bench/bench_failover.py [--rounds 5] [--lock-retry-s 2.0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_repair_dev.devservices.broker import Broker  # noqa: E402
from cdc_repair_dev.devservices.mariadb import MariaDBServer  # noqa: E402
from cdc_repair_dev.harness import DaemonProcess, isolated_raw_config  # noqa: E402


def _config(folder: Path, server: MariaDBServer, broker: Broker, lock_retry_s: float) -> Path:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for entry in raw["servers"].values():
        entry["dsn"] = server.dsn().to_url()
    raw["state"]["dsn"] = server.dsn("cdc_repair").to_url()
    raw["kafka"]["bootstrap_servers"] = [broker.bootstrap]
    raw = isolated_raw_config(raw, uuid.uuid4().hex[:8], server_id=4343)
    raw.update({"capture": [], "web": {"enabled": False}})
    raw["ha"]["lock_retry_s"] = lock_retry_s
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _wait_log(daemon: DaemonProcess, text: str, after: int, timeout_s: float) -> float | None:
    """Seconds (monotonic) when `text` first appears in the log after byte `after`, polled every 10 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in daemon.log_text()[after:]:
            return time.monotonic()
        time.sleep(0.01)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lock-retry-s", type=float, default=2.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    server = MariaDBServer(folder / "db", server_id=61).start()
    broker = Broker(folder / "broker").start()
    takeovers: list[float] = []
    try:
        config = _config(folder, server, broker, args.lock_retry_s)
        leader = DaemonProcess(config, folder / "d0.log", name="d0").start()
        if _wait_log(leader, "elected leader", 0, 120) is None:
            raise SystemExit(f"no leader: {leader.log_text()[-2000:]}")
        for i in range(1, args.rounds + 1):
            standby = DaemonProcess(config, folder / f"d{i}.log", name=f"d{i}").start()
            if _wait_log(standby, "daemon", 0, 120) is None:
                raise SystemExit(f"standby did not start: {standby.log_text()[-2000:]}")
            time.sleep(args.lock_retry_s + 1)  # settled: the standby is retrying the lock
            mark = len(standby.log_text())
            leader.kill()
            killed = time.monotonic()
            elected = _wait_log(standby, "elected leader", mark, 60)
            if elected is None:
                raise SystemExit(f"no takeover in round {i}: {standby.log_text()[-2000:]}")
            takeovers.append(elected - killed)
            leader = standby
        leader.stop(30)
    finally:
        broker.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    median = statistics.median(takeovers)
    print(json.dumps({
        "bench": "failover", "rounds": len(takeovers), "lock_retry_s": args.lock_retry_s,
        "takeover_s": {"min": round(min(takeovers), 3), "median": round(median, 3),
                       "max": round(max(takeovers), 3), "all": [round(t, 3) for t in takeovers]},
        "median_over_lock_retry": round(median / args.lock_retry_s, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
