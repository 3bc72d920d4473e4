"""The `cdc-repair` command line: global options, then one subcommand per stage.

Exit codes (like pt-table-sync): 0 ok, 1 error (a usage error too: click's own 2 would read as "differences"),
2 differences found or left. Machine output with --json (before or after the subcommand) goes to stdout; logs
always go to stderr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from cdc_repair import __version__
from cdc_repair.commands.common import DEFAULT_CONFIG, EXIT_ERROR, CliContext, run_guarded
from cdc_repair.log import setup_logging


class CliUsageError(click.UsageError):
    exit_code = EXIT_ERROR


# subcommand → (module, attribute): imported when used, so `validate` does not pay for `repair`'s imports
_COMMANDS = {"check-config": ("check_config", "command"), "tail": ("tail", "command"),
             "validate": ("validate", "command"), "diff": ("diff", "command"),
             "repair": ("repair", "command"), "rollback": ("rollback", "command"),
             "status": ("status", "command"), "run": ("run", "command"), "demo": ("demo", "command"),
             "dev": ("dev", "group")}


class CdcRepairGroup(click.Group):
    """A click group whose usage errors exit 1 (EXIT_ERROR), never click's 2, which here means differences.
    Subcommands are imported on first use (start-up time of every CLI call)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(c for c in _COMMANDS if c not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, attr = _COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"cdc_repair.commands.{module}"), attr)
        accept_json_anywhere(command)
        self.add_command(command, cmd_name)
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except CliUsageError:
            raise
        except click.UsageError as exc:
            raise CliUsageError(exc.format_message(), exc.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliUsageError:
            raise
        except click.UsageError as exc:  # a subcommand's bad option or value (raised while parsing or running)
            raise CliUsageError(exc.format_message(), exc.ctx) from None


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(CliContext).json_output = True  # type: ignore[union-attr]


def accept_json_anywhere(command: click.Command) -> None:
    """Give every subcommand its own `--json`, the same switch as the global one (`cdc-repair repair --json`)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_json_anywhere(sub)
        return
    if not any("--json" in p.opts for p in command.params if isinstance(p, click.Option)):
        command.params.append(click.Option(["--json", "json_here"], is_flag=True, expose_value=False,
                                           callback=_set_json, help="Machine-readable output on stdout "
                                           "(same as the global --json)."))


@click.group(cls=CdcRepairGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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




def main() -> None:
    run_guarded(lambda: cli(prog_name="cdc-repair"))
