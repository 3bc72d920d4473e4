"""What every command shares: the CLI context, loading settings, exit codes, JSON output."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from cdc_repair.config import Settings, load_settings
from cdc_repair.db.dsn import mask
from cdc_repair.errors import CdcRepairError, ConfigError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DIFFERENCES = 2  # like pt-table-sync: differences found / left

DEFAULT_CONFIG = "config/demo.yaml"

log = logging.getLogger(__name__)


@dataclass
class CliContext:
    config_path: Path
    json_output: bool
    log_format: str
    log_level: str

    def settings(self) -> Settings:
        """Load and validate the config; on error print every problem (one per line) and exit 1."""
        try:
            return load_settings(self.config_path)
        except ConfigError as exc:
            fail_config(exc)


def fail_config(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(f"config error: {mask(problem)}", err=True)
    sys.exit(EXIT_ERROR)


def fail(exc: CdcRepairError | str) -> NoReturn:
    """One line on stderr naming the problem (and the fix), exit 1."""
    click.echo(f"error: {mask(str(exc))}", err=True)
    sys.exit(EXIT_ERROR)


def require_dev_tools(command: str) -> None:
    """`demo` and `dev` live in the `cdc_repair_dev` package, which the product image leaves out: say so."""
    if importlib.util.find_spec("cdc_repair_dev") is None:
        fail(f"`cdc-repair {command}` needs the development tools (package cdc_repair_dev), which this install "
             "lacks: install from a source checkout with `pip install '.[dev]'`")


# Hints for MySQL errors an operator meets first, keyed by error number.
_MYSQL_HINTS = {
    1044: " (the user lacks a privilege on that database; see the grants in the README)",
    1045: " (wrong user or password in the DSN)",
    1142: " (the user lacks a privilege on that table; see the grants in the README)",
    1146: " (a configured table is missing; `cdc-repair check-config --connect` lists what is missing)",
    2003: " (is the server running? check the DSN's host and port)",
}


def describe_unexpected(exc: BaseException) -> str:
    """One line for an error no command anticipated: the driver's code and message, never a traceback.

    SQLAlchemy wraps the driver's exception (`.orig`) and adds a multi-line SQL dump and a URL: keep the cause.
    """
    orig = getattr(exc, "orig", None)
    base = orig if isinstance(orig, BaseException) else exc
    args = base.args
    if len(args) >= 2 and isinstance(args[0], int):  # a MySQL error: (errno, message)
        return f"MySQL error {args[0]}: {args[1]}{_MYSQL_HINTS.get(args[0], '')}"
    first = str(base).strip().splitlines()
    return f"{type(base).__name__}: {first[0]}" if first else type(base).__name__


def run_guarded(entry: Callable[[], None]) -> None:
    """Run the CLI; anything that escapes a command becomes one line on stderr and exit 1.

    The last line of defence, so a bare `except Exception` is right here: the traceback goes to the DEBUG log.
    """
    try:
        entry()
    except CdcRepairError as exc:
        fail(exc)
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        fail(f"{describe_unexpected(exc)} (run with --log-level DEBUG for the traceback)")


def emit_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


pass_ctx = click.make_pass_decorator(CliContext)
