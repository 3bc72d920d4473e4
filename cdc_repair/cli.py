"""The `cdc-repair` command line: global options, then one subcommand per stage.

Exit codes (like pt-table-sync): 0 ok, 1 error, 2 differences found or left. Machine output with --json goes
to stdout; logs always go to stderr.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cdc_repair import __version__
from cdc_repair.commands import (
    check_config,
    demo,
    dev,
    repair,
    rollback,
    run,
    status,
    tail,
    validate,
)
from cdc_repair.commands.common import DEFAULT_CONFIG, CliContext, run_guarded
from cdc_repair.log import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="cdc-repair")
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="CDC_REPAIR_CONFIG",
              default=DEFAULT_CONFIG, show_default=True, help="YAML config (or $CDC_REPAIR_CONFIG).")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output on stdout.")
@click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default=None,
              help="Log format on stderr (default: the config's log.format, else auto).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None)
@click.pass_context
def cli(ctx: click.Context, config_path: Path, json_output: bool, log_format: str | None,
        log_level: str | None) -> None:
    """cdc-repair: keep two MySQL tables consistent (binlog → Kafka → validate → guarded repair, with undo)."""
    fmt = log_format or os.environ.get("CDC_REPAIR_LOG_FORMAT", "auto")
    level = log_level or os.environ.get("CDC_REPAIR_LOG_LEVEL", "INFO")
    setup_logging(fmt, level)
    ctx.obj = CliContext(config_path=config_path, json_output=json_output, log_format=fmt, log_level=level)


for _module in (check_config, tail, validate, repair, rollback, status, run, demo):
    cli.add_command(_module.command)
cli.add_command(dev.group)


def main() -> None:
    run_guarded(lambda: cli(prog_name="cdc-repair"))
