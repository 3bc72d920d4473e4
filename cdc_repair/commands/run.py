"""`cdc-repair run`: the daemon (tailers, validators, repairers, scheduler, HTTP status/metrics).

SIGTERM/SIGINT: graceful stop within `--shutdown-timeout` (a second signal exits at once). SIGHUP: reload the
config file (live keys applied, the rest logged as needing a restart; a broken file is rejected).
Exit 0 after a clean stop, 1 when a stage did not stop within the bound.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from cdc_repair.commands.common import EXIT_ERROR, EXIT_OK, CliContext, fail, fail_config, pass_ctx
from cdc_repair.errors import CdcRepairError, ConfigError
from cdc_repair.log import setup_logging
from cdc_repair.runtime.signals import SignalEvents, install

log = logging.getLogger("cdc_repair.run")


@click.command("run")
@click.option("--shutdown-timeout", type=float, default=20.0, show_default=True,
              help="Seconds a graceful stop may take (flush, commit offsets, checkpoint, release locks).")
@pass_ctx
def command(ctx: CliContext, shutdown_timeout: float) -> None:
    """Run the whole pipeline as one long-running, highly available service."""
    from cdc_repair.app.daemon import build_app, check_keys_at_start

    settings = ctx.settings()
    apply_config_logging(ctx, settings.log.format, settings.log.level)
    try:
        check_keys_at_start(settings)
    except ConfigError as exc:
        fail_config(exc)
    events = SignalEvents()
    restore = install(events)
    try:
        app = build_app(settings, ctx.config_path, shutdown_timeout_s=shutdown_timeout)
    except CdcRepairError as exc:  # e.g. the state database is unreachable: one line, exit 1
        fail(exc)
    ok = app.serve(events)
    restore()
    code = EXIT_OK if ok else EXIT_ERROR
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        log.warning("threads still running after shutdown; exiting now")
        logging.shutdown()
        os._exit(code)  # a job thread stuck in I/O must not keep the process past the bound
    sys.exit(code)


def apply_config_logging(ctx: CliContext, fmt: str, level: str) -> None:
    """The config's log format/level apply unless given on the command line or in the environment."""
    explicit_fmt = ctx.log_format != "auto" or "CDC_REPAIR_LOG_FORMAT" in os.environ
    explicit_level = "--log-level" in sys.argv or "CDC_REPAIR_LOG_LEVEL" in os.environ
    setup_logging(ctx.log_format if explicit_fmt else fmt, ctx.log_level if explicit_level else level)
