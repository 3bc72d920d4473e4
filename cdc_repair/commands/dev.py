"""`cdc-repair dev up|down|status|env|schema`: the embedded MariaDB + broker for development and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc_repair.commands.common import CliContext, emit_json, fail, pass_ctx, require_dev_tools
from cdc_repair.errors import CdcRepairError

if TYPE_CHECKING:
    from cdc_repair_dev.devservices.stack import DevStack

_dir_option = click.option(
    "--dir", "root", type=click.Path(path_type=Path), default=None,
    help="Where the services keep data and logs (default: $CDC_REPAIR_DEV_DIR or .cdc-repair-dev).")


@click.group("dev")
def group() -> None:
    """Embedded development services (throwaway MariaDB with binlog, tansu broker)."""
    require_dev_tools("dev")


def _stack(root: Path | None) -> DevStack:
    """The stack lives in the dev package (cdc_repair_dev), imported only when a `dev` command runs."""
    from cdc_repair_dev.devservices.stack import DevStack, default_dir

    return DevStack(root or default_dir())


@group.command("up")
@_dir_option
@pass_ctx
def up(ctx: CliContext, root: Path | None) -> None:
    """Start MariaDB (binlog ROW/FULL/FULL) and the broker in the background; reuse them if running."""
    stack = _stack(root)
    try:
        status = stack.up(detach=True)
    except CdcRepairError as exc:
        fail(exc)
    _print_status(ctx, status)
    if not ctx.json_output:
        click.echo("export these to point config/demo.yaml at them:  eval \"$(cdc-repair dev env)\"")


@group.command("down")
@_dir_option
def down(root: Path | None) -> None:
    """Stop the embedded services (data stays in the directory)."""
    _stack(root).down()
    click.echo("embedded services stopped")


@group.command("status")
@_dir_option
@pass_ctx
def status(ctx: CliContext, root: Path | None) -> None:
    """Show whether the embedded services run and where."""
    _print_status(ctx, _stack(root).status())


@group.command("env")
@_dir_option
def env(root: Path | None) -> None:
    """Print `export` lines for the CDC_REPAIR_DEV_* variables config/demo.yaml reads."""
    try:
        for key, value in _stack(root).env().items():
            click.echo(f"export {key}={value}")
    except CdcRepairError as exc:
        fail(exc)


@group.command("schema")
@pass_ctx
def schema(ctx: CliContext) -> None:
    """Create the webook demo schema (resources/webook.sql) on the servers of the config's first pair."""
    from cdc_repair_dev.devservices.demo_schema import create_demo_schema

    settings = ctx.settings()
    try:
        done = create_demo_schema(settings)
    except CdcRepairError as exc:
        fail(exc)
    for server in done:
        click.echo(f"webook schema ready on {server}")


def _print_status(ctx: CliContext, status: dict[str, object]) -> None:
    if ctx.json_output:
        emit_json(status)
        return
    click.echo(f"directory: {status['dir']}")
    for name in ("mariadb", "broker"):
        info = status.get(name)
        if isinstance(info, dict) and info.get("pid"):
            state = "running" if info.get("running") else "stopped"
            click.echo(f"{name:8} {state:8} port {info.get('port')}  pid {info.get('pid')}  log {info.get('log')}")
        else:
            click.echo(f"{name:8} not started")
