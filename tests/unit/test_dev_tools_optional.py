"""The product image ships `cdc_repair` without `cdc_repair_dev`: `demo` and `dev` then say so in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Hide the dev package as an install without it would (sys.modules[name] = None makes every import of it fail).
_RUN_WITHOUT_DEV = """
import sys
sys.modules["cdc_repair_dev"] = None
from cdc_repair.cli import main
sys.argv = ["cdc-repair", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("args", "command"), [(["dev", "status"], "dev"), (["demo", "--duration", "1"], "demo")])
def test_dev_commands_name_the_missing_package_and_the_fix(args: list[str], command: str) -> None:
    done = subprocess.run([sys.executable, "-c", _RUN_WITHOUT_DEV, *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"`cdc-repair {command}` needs the development tools (package cdc_repair_dev)" in lines[0]
    assert "pip install '.[dev]'" in lines[0]
