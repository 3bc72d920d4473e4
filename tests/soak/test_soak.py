"""Soak (slow, ≥ 5 minutes): two daemons as subprocesses, the demo workload, faults injected (tailer connection
killed, broker frozen, leader kill -9 with a standby, server restarted). Runs bench/soak.py and checks its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_with_faults_converges_without_loss(tmp_path: Path) -> None:
    duration = os.environ.get("SOAK_SECONDS", "300")  # not CDC_REPAIR_*: that prefix is config
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", duration,
                           "--dir", str(tmp_path / "soak")], capture_output=True, text=True, timeout=1700,
                          check=False)
    assert done.stdout, done.stderr[-3000:]
    result = json.loads(done.stdout)
    print(json.dumps({k: v for k, v in result.items() if k not in ("faults",)}, indent=1))
    faults = {f["fault"] for f in result["faults"]}
    assert {"tailer_connection_killed", "broker_frozen", "leader_killed_9", "server_restarted"} <= faults
    takeover = next(f for f in result["faults"] if f["fault"] == "leader_killed_9")["takeover_s"]
    assert takeover is not None and takeover < 15
    assert result["final_differences"] == 0
    assert sum(result["independent_check_final"].values()) == 0
    assert result["row_changes_missing_from_kafka"] == 0, result["missing_sample"]
    assert result["repairs_applied_twice"] == 0, result["twice_sample"]
    assert result["overlapping_job_runs"] == 0, result["overlap_sample"]
    assert result["row_changes_written"] > 1000
    assert done.returncode == 0
