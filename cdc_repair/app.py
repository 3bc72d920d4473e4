"""The composition root: the one module that wires concrete stages into the daemon.

`build_app(settings, config_path)` returns an `App` holding the state engine, the live settings, the daemon
(supervised stages + leader election) and, once started, the web server. Stage classes come from their
packages (source.tailer.Tailer, validate.consumer.IncrementalValidator, repair.worker.RepairWorker); a stage
package not present in this build is left out with a warning, so the daemon still runs what exists.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_repair.config import CaptureConfig, Settings
from cdc_repair.observe import capture_stage_names
from cdc_repair.runtime.daemon import Daemon, host_id
from cdc_repair.runtime.jobs import JobContext
from cdc_repair.runtime.leader import MySQLNamedLock, leader_idle_timeout
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.runtime.scheduler import SchedulerStage
from cdc_repair.runtime.status import build_status
from cdc_repair.runtime.supervisor import Backoff, Runnable, StageSpec
from cdc_repair.state.engine import state_engine

log = logging.getLogger(__name__)

# (module, class) of each stage; looked up at build time so a missing package only drops its stage.
TAILER = ("cdc_repair.source.tailer", "Tailer")
VALIDATOR = ("cdc_repair.validate.consumer", "IncrementalValidator")
REPAIRER = ("cdc_repair.repair.worker", "RepairWorker")


def find_class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        log.warning("stage %s.%s is not available in this build (%s); running without it", module, name, exc)
        return None


def construct(cls: Any, live: LiveSettings, *args: Any, **optional: Any) -> Runnable:
    """`cls(settings, *args)`, plus `live=` and the `optional` keywords the class accepts (e.g. the shared
    state `engine`, so a restarted stage does not build a new connection pool)."""
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in {"live": live, **optional}.items() if k in params}
    return cls(live.current, *args, **kwargs)  # type: ignore[no-any-return]


def stage_specs(live: LiveSettings, ctx: JobContext) -> list[StageSpec]:
    """Every stage of `cdc-repair run`: tailers + scheduler (leader only), validator, repairer."""
    specs: list[StageSpec] = []
    tailer = find_class(*TAILER)
    if tailer is not None:
        captures = live.current.capture
        for cap, name in zip(captures, capture_stage_names(c.server for c in captures), strict=True):
            specs.append(StageSpec(name, _factory(tailer, live, cap), leader_only=True))
    validator = find_class(*VALIDATOR)
    if validator is not None:
        specs.append(StageSpec("validate", _factory(validator, live, engine=ctx.engine),
                               reload_sections=("validator",)))
    repairer = find_class(*REPAIRER)
    if repairer is not None:  # always there: it reads repair.auto_repair live and idles while it is false
        from cdc_repair.source.history import BinlogHistory  # compensation's binlog reader, given to the repairer

        specs.append(StageSpec("repair", _factory(repairer, live, history=BinlogHistory),
                               reload_sections=("repair",)))
    specs.append(StageSpec("scheduler", lambda: SchedulerStage(ctx), leader_only=True,
                           reload_sections=("scheduler",)))
    return specs


def _factory(cls: Any, live: LiveSettings, *args: Any, **optional: Any) -> Callable[[], Runnable]:
    return lambda: construct(cls, live, *args, **optional)


@dataclass
class App:
    live: LiveSettings
    engine: Any
    daemon: Daemon
    ctx: JobContext
    web: Any = None
    extra_stop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.live.current

    def status(self) -> dict[str, Any]:
        return build_status(self.live.current, self.engine, self.daemon)

    def start(self) -> None:
        self.daemon.start()
        self.web = start_web(self.live.current, self.status)

    def stop(self, timeout_s: float | None = None) -> bool:
        ok = self.daemon.stop(timeout_s)
        stop_web(self.web)
        self.web = None
        with contextlib.suppress(Exception):
            self.engine.dispose()
        return ok

    def web_url(self) -> str | None:
        if self.web is None:
            return None
        url = getattr(self.web, "url", None)
        if isinstance(url, str):
            return url
        port = getattr(self.web, "port", None) or self.settings.web.port
        return f"http://{self.settings.web.bind}:{port}/"


def build_app(settings: Settings, config_path: Path | None, *, shutdown_timeout_s: float = 20.0,
              backoff: Backoff | None = None, capture: list[CaptureConfig] | None = None) -> App:
    """Wire everything (no thread started yet). `capture` overrides which sources to tail (tests)."""
    if capture is not None:
        settings = settings.model_copy(update={"capture": capture})
    live = LiveSettings(settings, config_path)
    engine = state_engine(settings.state.dsn)
    ctx = JobContext(live, engine, host_id())
    lock = MySQLNamedLock(settings.state.dsn, settings.ha.lock_name,
                          idle_timeout_s=leader_idle_timeout(settings.ha.lock_retry_s))
    daemon = Daemon(live, stage_specs(live, ctx), lock, shutdown_timeout_s=shutdown_timeout_s, backoff=backoff)
    return App(live=live, engine=engine, daemon=daemon, ctx=ctx)


def start_web(settings: Settings, status_provider: Callable[[], dict[str, Any]]) -> Any:
    """The observability server (`cdc_repair/web.py` or `web/`), when enabled and present in this build."""
    if not settings.web.enabled:
        return None
    try:
        starter = importlib.import_module("cdc_repair.web").start_web
    except (ImportError, AttributeError) as exc:
        log.warning("web server not available in this build (%s); /metrics and status page are off", exc)
        return None
    try:
        return starter(settings, status_provider)
    except Exception as exc:  # e.g. the port is taken: the daemon still runs, the operator is told
        log.error("web server did not start on %s:%s: %s", settings.web.bind, settings.web.port, exc)
        return None


def stop_web(web: Any) -> None:
    for name in ("stop", "shutdown", "close"):
        method = getattr(web, name, None)
        if callable(method):
            with contextlib.suppress(Exception):
                method()
            return
