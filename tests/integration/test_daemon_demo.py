"""`cdc-repair demo` end to end (short): its own services, the in-process daemon, a workload, convergence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_converges_and_exits_0(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "cdc_repair", "--json", "demo", "--duration", "12", "--rate", "30",
                           "--fail-share", "0.3", "--corrupt-share", "0.1", "--dir", str(tmp_path / "demo")],
                          cwd=root, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["converged"] is True and doc["differences"] == 0
    final = doc["validations"][-1]
    assert final["differences"] == 0
    assert sum(final["independent_check"].values()) == 0  # the oracle agrees: the tables really are consistent
    work = doc["workload"]
    assert work["publish"] > 50 and work.get("publish_failed_between", 0) > 0
