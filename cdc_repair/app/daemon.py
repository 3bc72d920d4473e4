"""The daemon of `cdc-repair run`: every stage built with explicit arguments, supervised, plus the web server.

`build_app(settings, config_path)` returns an `App` holding the state engine (shared by the validator, the
scheduler's jobs, the status document and the web server's ledger gauges), the live settings, the daemon
(supervised stages + leader election) and, once started, the web server.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_repair.app.state import open_state
from cdc_repair.config import CaptureConfig, Settings
from cdc_repair.errors import CdcRepairError, ConfigError
from cdc_repair.observe import capture_stage_names
from cdc_repair.preflight import require_unique_keys
from cdc_repair.repair.worker import RepairWorker
from cdc_repair.runtime.daemon import Daemon, host_id
from cdc_repair.runtime.jobs import JobContext
from cdc_repair.runtime.leader import MySQLNamedLock, leader_idle_timeout
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.runtime.scheduler import SchedulerStage
from cdc_repair.runtime.signals import SignalEvents
from cdc_repair.runtime.status import build_status
from cdc_repair.runtime.supervisor import Backoff, StageFactory, StageSpec
from cdc_repair.source.history import BinlogHistory
from cdc_repair.source.tailer import Tailer
from cdc_repair.state.engine import StateEngine
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair.web import WebServer, start_web

log = logging.getLogger(__name__)


def stage_specs(live: LiveSettings, ctx: JobContext) -> list[StageSpec]:
    """Every stage of `cdc-repair run`: tailers + scheduler (leader only), validator, repairer.

    Each factory builds a fresh stage from the settings in force at that moment (a restart after a reload
    gets the new ones). The repairer also gets `live`, so it re-reads `repair.*` on every pass, and the binlog
    reader compensation needs (`source/history.py`); it is always there, and idles while `repair.auto_repair`
    is false."""
    captures = live.current.capture
    specs = [StageSpec(name, _tailer(live, cap), leader_only=True)
             for cap, name in zip(captures, capture_stage_names(c.server for c in captures), strict=True)]
    specs.append(StageSpec("validate", lambda: IncrementalValidator(live.current, engine=ctx.engine),
                           reload_sections=("validator",)))
    specs.append(StageSpec("repair", lambda: RepairWorker(live.current, live=live, history=BinlogHistory),
                           reload_sections=("repair",)))
    specs.append(StageSpec("scheduler", lambda: SchedulerStage(ctx), leader_only=True,
                           reload_sections=("scheduler",)))
    return specs


def _tailer(live: LiveSettings, capture: CaptureConfig) -> StageFactory:
    return lambda: Tailer(live.current, capture)


@dataclass
class App:
    live: LiveSettings
    engine: StateEngine
    daemon: Daemon
    ctx: JobContext
    web: WebServer | None = None

    @property
    def settings(self) -> Settings:
        return self.live.current

    def status(self) -> dict[str, Any]:
        return build_status(self.live.current, self.engine, self.daemon)

    def start(self) -> None:
        self.daemon.start()
        self.web = _start_web(self.live.current, self.status, self.engine)

    def serve(self, events: SignalEvents) -> bool:
        """`cdc-repair run`: start, reload on SIGHUP, stop on SIGTERM/SIGINT; True after a clean stop."""
        self.start()
        log.info("cdc-repair running as %s (status: %s)", self.daemon.host, self.web_url() or "web off")
        ok = self.daemon.run_until_stopped(events)
        self.stop(0.5)
        return ok

    def stop(self, timeout_s: float | None = None) -> bool:
        ok = self.daemon.stop(timeout_s)
        if self.web is not None:
            with contextlib.suppress(Exception):
                self.web.stop()
            self.web = None
        with contextlib.suppress(Exception):
            self.engine.dispose()
        return ok

    def web_url(self) -> str | None:
        return self.web.url if self.web is not None else None


def build_app(settings: Settings, config_path: Path | None, *, shutdown_timeout_s: float = 20.0,
              backoff: Backoff | None = None, capture: list[CaptureConfig] | None = None) -> App:
    """Wire everything (no thread started yet). `capture` overrides which sources to tail (tests).
    An unreachable state database is a CdcRepairError naming it (`app.state.open_state`)."""
    if capture is not None:
        settings = settings.model_copy(update={"capture": capture})
    live = LiveSettings(settings, config_path)
    engine = open_state(settings, "open")
    ctx = JobContext(live, engine, host_id())
    lock = MySQLNamedLock(settings.state.dsn, settings.ha.lock_name,
                          idle_timeout_s=leader_idle_timeout(settings.ha.lock_retry_s))
    daemon = Daemon(live, stage_specs(live, ctx), lock, shutdown_timeout_s=shutdown_timeout_s, backoff=backoff)
    return App(live=live, engine=engine, daemon=daemon, ctx=ctx)


def check_keys_at_start(settings: Settings) -> None:
    """Refuse to start (ConfigError, one line per pair side) when a pair's key is not unique; a server that does
    not answer yet is only a warning here: the stages retry, and every repair write checks its affected rows."""
    try:
        require_unique_keys(settings)
    except ConfigError:
        raise
    except CdcRepairError as exc:
        log.warning("could not check the pairs' keys at start: %s", exc)


def _start_web(settings: Settings, status_provider: Callable[[], dict[str, Any]],
               engine: StateEngine) -> WebServer | None:
    """The observability server, when enabled; one that cannot start is logged, and the daemon runs on."""
    if not settings.web.enabled:
        return None
    try:
        return start_web(settings, status_provider, engine=engine)
    except Exception as exc:  # e.g. the port is taken: the daemon still runs, the operator is told
        log.error("web server did not start on %s:%s: %s", settings.web.bind, settings.web.port, exc)
        return None
