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
from cdc_repair.config import Settings
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
    from cdc_repair.app import build_app

    settings = ctx.settings()
    apply_config_logging(ctx, settings.log.format, settings.log.level)
    refuse_non_unique_keys(settings)
    events = SignalEvents()
    restore = install(events)
    try:
        app = build_app(settings, ctx.config_path, shutdown_timeout_s=shutdown_timeout)
    except CdcRepairError as exc:
        fail(exc)
    except Exception as exc:  # e.g. the state database is unreachable: one line, exit 1 (a supervisor restarts us)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"cannot open the state database {settings.state.dsn.masked()}: {reason} "
             f"(is it running? check state.dsn)")
    app.start()
    log.info("cdc-repair running as %s (status: %s)", app.daemon.host, app.web_url() or "web off")
    ok = app.daemon.run_until_stopped(events)
    app.stop(0.5)
    restore()
    code = EXIT_OK if ok else EXIT_ERROR
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        log.warning("threads still running after shutdown; exiting now")
        logging.shutdown()
        os._exit(code)  # a job thread stuck in I/O must not keep the process past the bound
    sys.exit(code)


def refuse_non_unique_keys(settings: Settings) -> None:
    """Exit 1 (one line per pair side) when a pair's key is not unique; a server that does not answer yet is
    only a warning here: the stages retry, and every repair write checks its affected rows anyway."""
    from cdc_repair.preflight import require_unique_keys

    try:
        require_unique_keys(settings)
    except ConfigError as exc:
        fail_config(exc)
    except CdcRepairError as exc:
        log.warning("could not check the pairs' keys at start: %s", exc)


def apply_config_logging(ctx: CliContext, fmt: str, level: str) -> None:
    """The config's log format/level apply unless given on the command line or in the environment."""
    explicit_fmt = ctx.log_format != "auto" or "CDC_REPAIR_LOG_FORMAT" in os.environ
    explicit_level = "--log-level" in sys.argv or "CDC_REPAIR_LOG_LEVEL" in os.environ
    setup_logging(ctx.log_format if explicit_fmt else fmt, ctx.log_level if explicit_level else level)
