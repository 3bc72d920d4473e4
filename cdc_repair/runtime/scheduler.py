"""The scheduler stage (leader only): APScheduler 3.11 `BackgroundScheduler` running the jobs of `jobs.py`.

Choices, deliberately:
- `max_instances=1`: a slow full scan never overlaps itself (and `run_job` adds a cross-daemon lock).
- `coalesce=True`: after downtime, a job that missed several fire times runs once, not N times in a row.
- `misfire_grace_time=scheduler.misfire_grace_s`: a run that is late by less than this still happens (the
  daemon was busy or just became leader); later than that it is skipped until its next fire time.
`build_triggers` is pure (which job fires when); `SchedulerStage` is the thin APScheduler adapter. A live
reload of `scheduler.*` rebuilds the triggers without restarting the stage.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from cdc_repair.config import SchedulerConfig, Settings
from cdc_repair.runtime.jobs import JOBS, JobContext, run_job
from cdc_repair.stage import Stage

log = logging.getLogger(__name__)

FULL_SCAN_REQUEST_POLL_S = 10.0


@dataclass(frozen=True)
class TriggerSpec:
    kind: str  # cron | interval
    value: str | float  # crontab expression or seconds


def build_triggers(cfg: SchedulerConfig) -> dict[str, TriggerSpec]:
    """Job name → when it fires (pure)."""
    return {
        "full_validation": TriggerSpec("cron", cfg.full_scan_cron),
        "window_scan": TriggerSpec("interval", cfg.window_scan_interval_s),
        "cleanup": TriggerSpec("cron", cfg.cleanup_cron),
        "lag_check": TriggerSpec("interval", cfg.lag_check_interval_s),
        "full_scan_request": TriggerSpec("interval", min(FULL_SCAN_REQUEST_POLL_S, cfg.retry_interval_s)),
    }


def _trigger(spec: TriggerSpec, timezone: str) -> Any:
    if spec.kind == "cron":
        return CronTrigger.from_crontab(str(spec.value), timezone=timezone)
    return IntervalTrigger(seconds=float(spec.value), timezone=timezone)


class SchedulerStage(Stage):
    """`run(stop_event)`: start the scheduler, wait, shut it down without waiting for running jobs."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._scheduler: Any = None
        self._specs: dict[str, TriggerSpec] = {}

    def run(self, stop_event: threading.Event) -> None:
        self.ctx = dataclasses.replace(self.ctx, stop=stop_event)
        cfg = self.ctx.settings.scheduler
        sched = BackgroundScheduler(timezone=cfg.timezone, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": cfg.misfire_grace_s})
        self._scheduler = sched
        self._schedule(cfg)
        sched.start()
        log.info("scheduler started: %s", ", ".join(f"{k}={v.kind}:{v.value}" for k, v in self._specs.items()))
        try:
            stop_event.wait()
        finally:
            sched.shutdown(wait=False)
            self._scheduler = None
            log.info("scheduler stopped")

    def _schedule(self, cfg: SchedulerConfig) -> None:
        if cfg.timezone != getattr(self, "_timezone", cfg.timezone):
            self._specs = {}  # every trigger is re-created in the new time zone
        self._timezone = cfg.timezone
        specs = build_triggers(cfg)
        for name, spec in specs.items():
            if self._specs.get(name) == spec:
                continue
            self._scheduler.add_job(run_job, _trigger(spec, cfg.timezone), args=(self.ctx, name, JOBS[name]),
                                    id=name, name=name, replace_existing=True,
                                    misfire_grace_time=cfg.misfire_grace_s)
            if name in self._specs:
                log.info("scheduler: %s now fires on %s %s", name, spec.kind, spec.value)
        self._specs = specs

    def update_settings(self, settings: Settings) -> bool:
        """Live reload: re-create the triggers that changed (no restart needed)."""
        if self._scheduler is not None:
            self._schedule(settings.scheduler)
        return True

    def health(self) -> dict[str, Any]:
        sched = self._scheduler
        if sched is None:
            return {}
        runs = {}
        for job in sched.get_jobs():
            at = getattr(job, "next_run_time", None)  # absent until the scheduler has started
            runs[job.id] = at.isoformat() if at else None
        return {"next_runs": runs}

