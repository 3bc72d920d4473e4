"""The write path's crash points do nothing in production; the test entry point's hook kills the process at
exactly the named one (what the crash tests of repair rely on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_crash_points_are_inert_without_a_hook() -> None:
    from cdc_repair.repair import executor

    assert executor.CRASH_HOOKS == []
    executor.crash_point("after_row_commit")  # returns: nothing is installed in the product


def test_the_crashing_cli_dies_at_its_point_and_only_there() -> None:
    script = ("from cdc_repair_dev.crashing_cli import install_crash\n"
              "from cdc_repair.repair.executor import crash_point\n"
              "install_crash('after_row_commit')\n"
              "crash_point('before_anything'); print('alive', flush=True)\n"
              "crash_point('after_row_commit'); print('not reached', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout) == (86, "alive\n"), done.stderr


def test_the_crashing_cli_runs_the_cli_with_the_remaining_arguments() -> None:
    done = subprocess.run([sys.executable, "-m", "cdc_repair_dev.crashing_cli", "after_row_commit", "--version"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("cdc-repair, version"), done.stderr
