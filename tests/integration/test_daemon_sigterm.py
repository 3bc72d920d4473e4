"""SIGTERM under load: the daemon exits within its bound, and a restart resumes capture without losing a change."""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import load_settings
from cdc_repair_dev.audit import read_topic
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config
from cdc_repair_dev.workload import Workload, WorkloadConfig, missing_from_stream


def test_sigterm_under_load_then_restart_loses_nothing(demo_config: Any, mariadb: MariaDBServer, broker: Broker,
                                                       tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    raw = yaml.safe_load(Path(demo_config({"web": {"enabled": False}})).read_text())
    raw = isolated_raw_config(raw, tag, server_id=random.randint(10_000, 2**31))
    raw["scheduler"] = {"full_scan_cron": "0 3 * * *", "window_scan_interval_s": 3600}
    config = tmp_path / "sigterm.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    create_isolated_schema(settings)

    a = DaemonProcess(config, tmp_path / "a.log", name="a").start()
    try:
        assert a.wait_for_log("streaming", 60), a.log_text()[-3000:]
        workload = Workload(settings, WorkloadConfig(rate_per_s=60, corrupt_share=0.05, seed=3))
        stop = threading.Event()
        worker = threading.Thread(target=workload.run, args=(stop,), daemon=True)
        worker.start()
        time.sleep(6)
        t0 = time.monotonic()
        a.terminate()
        code = a.wait(25)
        took = time.monotonic() - t0
        assert code == 0, a.log_text()[-3000:]
        assert took < 20, f"graceful stop took {took:.1f}s"
        assert "releasing the leader lock" in a.log_text()
        time.sleep(3)  # changes while no daemon runs must be captured after the restart
        b = DaemonProcess(config, tmp_path / "b.log", name="b").start()
        try:
            assert b.wait_for_log("streaming", 60), b.log_text()[-3000:]
            time.sleep(4)
            stop.set()
            worker.join(10)
            time.sleep(4)  # let the tailer send the tail end
            journal = list(workload.journal)
            assert len(journal) > 300
            messages = list(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topic.name, idle_s=4))
            missing = missing_from_stream(journal, messages)
            assert missing == [], f"{len(missing)} of {len(journal)} row changes missing from Kafka: {missing[:5]}"
            assert b.stop(25) == 0
        finally:
            b.stop(5)
    finally:
        a.stop(5)
