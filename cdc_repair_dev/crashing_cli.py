"""`python -m cdc_repair_dev.crashing_cli POINT [cdc-repair arguments…]`: the CLI, dying at a crash point.

The product's write path has named crash points (`cdc_repair.repair.executor.crash_point`) that do nothing
unless a test installs a hook. This entry point installs one that ends the process with exit code 86, without
any clean-up, when the write path reaches POINT (e.g. `after_row_commit`), then runs `cdc-repair` with the
remaining arguments: a real process killed at an exact moment, for the tests that prove a re-run neither
loses nor doubles a repair.
"""

from __future__ import annotations

import os
import sys

from cdc_repair.cli import main as cli_main
from cdc_repair.repair import executor

CRASH_EXIT_CODE = 86


def install_crash(point: str) -> None:
    """From now on, reaching `point` in the write path ends the process at once (no flush, no finally)."""

    def crash(name: str) -> None:
        if name == point:
            os._exit(CRASH_EXIT_CODE)

    executor.CRASH_HOOKS.append(crash)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m cdc_repair_dev.crashing_cli POINT [cdc-repair arguments…]")
    install_crash(args[0])
    sys.argv = ["cdc-repair", *args[1:]]
    cli_main()


if __name__ == "__main__":
    main()
