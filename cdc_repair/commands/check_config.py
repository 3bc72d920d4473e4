"""`cdc-repair check-config [--connect]`: every config problem at once; with --connect, the servers too."""

from __future__ import annotations

import sys
from typing import Any

import click

from cdc_repair.commands.common import EXIT_ERROR, EXIT_OK, CliContext, emit_json, pass_ctx
from cdc_repair.config import load_settings
from cdc_repair.db.dsn import mask
from cdc_repair.errors import ConfigError


def describe_pair(summary: dict[str, Any]) -> str:
    """`pair NAME (KIND, key K): compares A, B` (the columns the rules compare by default)."""
    head = f"pair {summary['name']} ({summary['kind']}, key {', '.join(summary['key'])}): compares "
    if summary["compare"] is None:
        return head + f"every column but {', '.join(summary['not_compared'])}"
    return head + (", ".join(summary["compare"]) or "no column")


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
    pairs = [p.compare_summary() for p in settings.pairs] if settings is not None else []
    if ctx.json_output:
        emit_json({"config": str(ctx.config_path), "ok": not problems, "problems": problems, "pairs": pairs})
    else:
        for p in problems:
            click.echo(f"config error: {p}", err=True)
        if not problems:
            click.echo(f"{ctx.config_path}: OK" + (" (servers and broker checked)" if connect else ""))
        for summary in pairs:
            click.echo(describe_pair(summary))
    sys.exit(EXIT_ERROR if problems else EXIT_OK)
