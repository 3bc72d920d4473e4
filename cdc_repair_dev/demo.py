"""`cdc-repair demo`: embedded MariaDB + broker, the whole daemon in-process, a webook workload, a live view,
then proof of convergence (a final full validation with zero differences).

Steps: start the services (fresh temp dir unless `--dir`), export CDC_REPAIR_DEV_* so config/demo.yaml finds
them, create the webook schema, start the daemon (tailer, validator, repairer, scheduler, web), drive the
workload for `duration_s` (or until Ctrl-C), stop it, wait for the pipeline to drain, run a full validation;
if it still finds differences (they go to the ledger and get repaired), drain and validate again, a few times.
Exit 0 when a full validation found zero differences, 2 otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cdc_repair import metrics
from cdc_repair.config import Settings, load_settings
from cdc_repair.log import JsonFormatter, MaskingFilter
from cdc_repair.model.ledger import IN_PROGRESS_STATUSES
from cdc_repair.runtime.signals import SignalEvents, install
from cdc_repair.state import ledger
from cdc_repair_dev.devservices import process
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.demo_schema import create_demo_schema
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.workload import Workload, WorkloadConfig, contract_violations, reset_tables

log = logging.getLogger(__name__)



@dataclass
class DemoOptions:
    config_path: Path
    duration_s: float = 60.0
    rate_per_s: float = 20.0
    publish_fail_share: float = 0.1
    corrupt_share: float = 0.03
    seed: int = 42
    data_dir: Path | None = None  # None: a fresh temp dir, removed afterwards
    drain_timeout_s: float = 120.0
    validations: int = 3


@dataclass
class DemoResult:
    converged: bool
    differences: int
    validations: list[dict[str, Any]] = field(default_factory=list)
    workload: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    status_url: str | None = None
    log_path: str | None = None


# ---------------------------------------------------------------------------------------------- metrics view


def metric_sum(name: str, **labels: str) -> float:
    """Sum of a metric's samples matching `labels` (in-process registry)."""
    total = 0.0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def metric_by(name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                out[sample.labels[label]] = out.get(sample.labels[label], 0.0) + sample.value
    return out


def metric_max(name: str) -> float | None:
    values = [s.value for f in metrics.REGISTRY.collect() for s in f.samples if s.name == name]
    return max(values) if values else None


def pipeline_counts() -> dict[str, Any]:
    return {
        "changes_captured": int(metric_sum("cdc_repair_source_rows_total")),
        "keys_checked": int(metric_sum("cdc_repair_validate_keys_checked_total")),
        "inconsistencies": {k: int(v) for k, v in metric_by("cdc_repair_validate_confirmed_total", "kind").items()},
        "repairs_applied": int(metric_sum("cdc_repair_repair_actions_total", outcome="applied")),
        "repairs_failed": int(metric_sum("cdc_repair_repair_actions_total", outcome="failed")),
        "lag_s": metric_max("cdc_repair_source_lag_seconds"),
        "stage_restarts": int(metric_sum("cdc_repair_stage_restarts_total")),
        "errors": int(metric_sum("cdc_repair_errors_total")),
    }


def render(phase: str, elapsed: float, work: dict[str, Any], pipe: dict[str, Any], open_now: int | None,
           url: str | None) -> Group:
    table = Table(title=f"cdc-repair demo: {phase}  ({elapsed:.0f}s)", show_header=True, expand=False)
    table.add_column("workload (webook)", style="cyan")
    table.add_column("", justify="right")
    table.add_column("pipeline", style="green")
    table.add_column("", justify="right")
    found = pipe["inconsistencies"]
    lag = pipe["lag_s"]
    left = [("articles created", work.get("create", 0)), ("edits", work.get("edit", 0)),
            ("publishes", work.get("publish", 0)),
            ("  failed between writes", work.get("publish_failed_between", 0)),
            ("withdrawals", work.get("withdraw", 0)),
            ("  failed between writes", work.get("withdraw_failed_between", 0)),
            ("online rows corrupted", work.get("corrupt", 0)), ("online rows deleted", work.get("delete_online", 0)),
            ("orphans inserted", work.get("orphan", 0))]
    right = [("changes captured", pipe["changes_captured"]), ("keys checked", pipe["keys_checked"]),
             ("missing in target", found.get("missing_in_target", 0)), ("different", found.get("different", 0)),
             ("extra in target", found.get("extra_in_target", 0)), ("repairs applied", pipe["repairs_applied"]),
             ("ledger open now", "-" if open_now is None else open_now),
             ("binlog lag", "-" if lag is None else f"{lag:.1f}s"),
             ("stage restarts / errors", f"{pipe['stage_restarts']} / {pipe['errors']}")]
    for (a, b), (c, d) in zip(left, right, strict=True):
        table.add_row(a, str(b), c, str(d))
    footer = Text(f"status page: {url}" if url else "status page: off", style="dim")
    return Group(table, footer)


# ---------------------------------------------------------------------------------------------- the demo


class Demo:
    def __init__(self, opts: DemoOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.root = opts.data_dir or Path(tempfile.mkdtemp(prefix="cdc-repair-demo-"))
        self.temp = opts.data_dir is None
        self.db: MariaDBServer | None = None
        self.broker: Broker | None = None
        self.app: Any = None
        self.t0 = time.monotonic()
        self.workload: Workload | None = None
        self.phase = "starting"

    def run(self, events: SignalEvents) -> DemoResult:
        try:
            settings = self._start_services()
            self._start_daemon(settings)
            return self._drive(events)
        finally:
            self.close()

    # -- set-up

    def _start_services(self) -> Settings:
        self.root.mkdir(parents=True, exist_ok=True)
        self._log_to_file()
        self.console.print(f"[bold]cdc-repair demo[/] - embedded MariaDB + broker in {self.root}")
        self.db = MariaDBServer(self.root / "mariadb", server_id=1).start()
        self.broker = Broker(self.root / "broker").start()
        os.environ.update({"CDC_REPAIR_DEV_MARIADB_PORT": str(self.db.port),
                           "CDC_REPAIR_DEV_BROKER_PORT": str(self.broker.port),
                           "CDC_REPAIR_DEV_PASSWORD": self.db.password})
        settings = load_settings(self.opts.config_path)
        if settings.web.enabled and settings.web.port and not _port_free(settings.web.bind, settings.web.port):
            settings = settings.model_copy(update={"web": settings.web.model_copy(update={"port": 0})})
        create_demo_schema(settings)
        reset_tables(settings)
        from cdc_repair.sink.kafka_admin import ensure_topics

        ensure_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic.name, settings.kafka.dead_letter_topic],
                      settings.kafka.partitions, settings.kafka.replication_factor)
        self.console.print(f"  MariaDB on 127.0.0.1:{self.db.port}, broker on {self.broker.bootstrap}, "
                           f"schema webook_author / webook_online created")
        return settings

    def _log_to_file(self) -> None:
        handler = logging.FileHandler(self.root / "demo.log")
        handler.setFormatter(JsonFormatter())
        handler.addFilter(MaskingFilter())
        logging.getLogger().handlers[:] = [handler]
        self.log_path = self.root / "demo.log"

    def _start_daemon(self, settings: Settings) -> None:
        from cdc_repair.app.daemon import build_app

        self.app = build_app(settings, self.opts.config_path, shutdown_timeout_s=15)
        self.app.start()
        names = [s.name for s in self.app.daemon.supervisor.specs.values()]
        self.console.print(f"  daemon started in-process: stages {', '.join(names)}")
        self.console.print(f"  status page: [link]{self.app.web_url() or 'off'}[/link]   logs: {self.log_path}")
        self._wait(lambda: self._capture_running(), 60, "the tailer to start")

    def _capture_running(self) -> bool:
        sup = self.app.daemon.supervisor
        capture = [name for name in sup.specs if name.startswith("capture")]
        if capture:
            stages = [sup.stage(name) for name in capture]
            return all(s is not None and getattr(s, "ready", threading.Event()).is_set() for s in stages)
        return bool(self.app.daemon.is_leader)

    # -- the run

    def _drive(self, events: SignalEvents) -> DemoResult:
        """1. workload with a live view, 2. stop it, 3. drain + full validation until zero differences."""
        assert self.app is not None
        cfg = WorkloadConfig(rate_per_s=self.opts.rate_per_s, publish_fail_share=self.opts.publish_fail_share,
                             corrupt_share=self.opts.corrupt_share, seed=self.opts.seed)
        self.workload = Workload(self.app.settings, cfg)
        stop_work = threading.Event()
        worker = threading.Thread(target=self.workload.run, args=(stop_work, self.opts.duration_s),
                                  name="workload", daemon=True)
        self.t0 = time.monotonic()
        worker.start()
        result = DemoResult(converged=False, differences=-1, status_url=self.app.web_url(),
                            log_path=str(self.log_path))
        with Live(self._view(), console=self.console, refresh_per_second=4, transient=False,
                  redirect_stderr=False) as live:
            self.phase = f"workload ({self.opts.duration_s:.0f}s, Ctrl-C to stop early)"
            while worker.is_alive() and not events.stop.is_set():
                events.wake.wait(0.25)
                live.update(self._view())
            stop_work.set()
            worker.join(10)
            self._converge(live, result)
        result.workload = self.workload.stats.as_dict()
        result.pipeline = pipeline_counts()
        by_status: dict[str, int] = {}
        for (_pair, _kind, status), n in ledger.counts(self.app.engine).items():
            by_status[status] = by_status.get(status, 0) + n
        result.pipeline["ledger_by_status"] = by_status
        return result

    def _converge(self, live: Live, result: DemoResult) -> None:
        """Drain, then a full validation; differences it finds get repaired, so try again a few times."""
        for round_no in range(1, self.opts.validations + 1):
            self.phase = f"draining the pipeline (round {round_no})"
            self._drain(live)
            self.phase = f"final full validation (round {round_no})"
            live.update(self._view())
            report = self._full_validation()
            result.validations.append(report)
            result.differences = report["differences"]
            if report["differences"] == 0:
                result.converged = True
                break
        self.phase = "converged" if result.converged else "differences remain"
        live.update(self._view())

    def _view(self) -> Group:
        open_now = None
        with contextlib.suppress(Exception):
            open_now = sum(n for (_p, _k, s), n in ledger.counts(self.app.engine).items() if s in IN_PROGRESS_STATUSES)
        work = self.workload.stats.as_dict() if self.workload else {}
        return render(self.phase, time.monotonic() - self.t0, work, pipeline_counts(), open_now, self.app.web_url())

    def _drain(self, live: Live) -> None:
        """Wait until capture, validation and repair are quiet and the ledger has nothing active."""
        settings = self.app.settings
        quiet_s = settings.validator.settle_delay_s + settings.validator.recheck_delay_s * (
            settings.validator.rechecks + 1) + 3.0
        deadline = time.monotonic() + self.opts.drain_timeout_s
        last = (-1, -1, -1)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            pipe = pipeline_counts()
            now = (pipe["changes_captured"], pipe["keys_checked"], pipe["repairs_applied"])
            if now != last:
                last, quiet_since = now, time.monotonic()
            active = sum(n for (_p, _k, s), n in ledger.counts(self.app.engine).items() if s in IN_PROGRESS_STATUSES)
            if active == 0 and time.monotonic() - quiet_since >= quiet_s:
                return
            live.update(self._view())
            time.sleep(0.5)
        log.warning("pipeline did not drain within %.0fs", self.opts.drain_timeout_s)

    def _full_validation(self) -> dict[str, Any]:
        from cdc_repair.validate.full_scan import run_full_scan

        before = contract_violations(self.app.settings)
        report = run_full_scan(self.app.settings, None, resume=False, engine=self.app.engine)
        return {"differences": report.differences, "seconds": round(report.seconds, 2),
                "pairs": [{"pair": p.pair, "rows": p.rows, "diffs": dict(p.diffs)} for p in report.pairs],
                "independent_check": {k: len(v) for k, v in before.items()}}

    def _wait(self, cond: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        self.console.print(f"[yellow]warning: waited {timeout_s:.0f}s for {what}; continuing[/]")

    # -- tear-down

    def close(self) -> None:
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.app.stop(15)
        for service in (self.broker, self.db):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()
        if self.temp:
            shutil.rmtree(self.root, ignore_errors=True)


def _port_free(bind: str, port: int) -> bool:
    return process.free_port(port) == port if bind in ("127.0.0.1", "0.0.0.0", "localhost") else True


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    console = console or Console(stderr=False)
    events = SignalEvents()
    restore = install(events)
    try:
        return Demo(opts, console).run(events)
    finally:
        restore()


def summary_table(result: DemoResult) -> Table:
    table = Table(title="summary", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    work = result.workload
    pipe = result.pipeline
    table.add_row("workload", ", ".join(f"{k}={v}" for k, v in sorted(work.items())))
    table.add_row("changes captured", str(pipe.get("changes_captured")))
    table.add_row("keys checked", str(pipe.get("keys_checked")))
    table.add_row("inconsistencies found", ", ".join(f"{k}={v}" for k, v in sorted(pipe.get("inconsistencies",
                                                                                           {}).items())) or "0")
    table.add_row("repairs applied", str(pipe.get("repairs_applied")))
    ledger_states = pipe.get("ledger_by_status") or {}
    table.add_row("ledger entries", ", ".join(f"{k}={v}" for k, v in sorted(ledger_states.items())) or "none")
    if ledger_states.get("resolved"):
        table.add_row("", "resolved = consistent again by a later write of the workload before any repair")
    for i, v in enumerate(result.validations, 1):
        oracle = sum(v.get("independent_check", {}).values())
        table.add_row(f"full validation {i}", f"{v['differences']} differences over "
                      f"{sum(p['rows'] for p in v['pairs'])} rows in {v['seconds']}s "
                      f"(independent contract check just before: {oracle})")
    verdict = ("[green]CONVERGED: the final full validation found 0 differences[/]" if result.converged
               else f"[red]NOT CONVERGED: {result.differences} differences remain[/]")
    table.add_row("result", verdict)
    return table
