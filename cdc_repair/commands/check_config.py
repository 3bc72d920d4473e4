"""`cdc-repair check-config [--connect]`: every config problem at once; with --connect, the servers too."""

from __future__ import annotations

import sys

import click

from cdc_repair.commands.common import EXIT_ERROR, EXIT_OK, CliContext, emit_json, pass_ctx
from cdc_repair.config import load_settings
from cdc_repair.db.dsn import mask
from cdc_repair.errors import ConfigError


@click.command("check-config")
@click.option("--connect", is_flag=True, help="Also connect: binlog settings, privileges, tables, columns, broker.")
@pass_ctx
def command(ctx: CliContext, connect: bool) -> None:
    """Validate the configuration and report every problem, each with its path and the fix."""
    problems: list[str] = []
    try:
        settings = load_settings(ctx.config_path)
    except ConfigError as exc:
        problems = exc.problems
        settings = None
    if settings is not None and connect:
        from cdc_repair.preflight import connect_problems

        problems = connect_problems(settings)
    problems = [mask(p) for p in problems]
    if ctx.json_output:
        emit_json({"config": str(ctx.config_path), "ok": not problems, "problems": problems})
    else:
        for p in problems:
            click.echo(f"config error: {p}", err=True)
        if not problems:
            click.echo(f"{ctx.config_path}: OK" + (" (servers and broker checked)" if connect else ""))
    sys.exit(EXIT_ERROR if problems else EXIT_OK)
