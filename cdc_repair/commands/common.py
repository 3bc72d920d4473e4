"""What every command shares: the CLI context, loading settings, exit codes, JSON output."""

from __future__ import annotations

import sys
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


def emit_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


pass_ctx = click.make_pass_decorator(CliContext)
