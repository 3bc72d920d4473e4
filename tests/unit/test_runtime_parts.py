"""Pure parts of the runtime: scheduler triggers, workload planning, status text, log masking of reloads."""

from __future__ import annotations

import random

from cdc_repair.commands.status import render_text
from cdc_repair.config import SchedulerConfig
from cdc_repair.runtime.scheduler import TriggerSpec, build_triggers
from cdc_repair_dev.workload import Model, WorkloadConfig, plan_op


def test_build_triggers_maps_every_job_to_its_config_key() -> None:
    cfg = SchedulerConfig(full_scan_cron="*/10 * * * *", window_scan_interval_s=60, retry_interval_s=5,
                          cleanup_cron="30 4 * * *", lag_check_interval_s=15)
    assert build_triggers(cfg) == {
        "full_validation": TriggerSpec("cron", "*/10 * * * *"),
        "window_scan": TriggerSpec("interval", 60),
        "cleanup": TriggerSpec("cron", "30 4 * * *"),
        "lag_check": TriggerSpec("interval", 15),
        "full_scan_request": TriggerSpec("interval", 5),
    }


def test_plan_op_is_deterministic_and_mixes_operations() -> None:
    cfg = WorkloadConfig(publish_fail_share=0.5, corrupt_share=0.2)

    def plan(seed: int) -> list[tuple[str, int, bool]]:
        rng, model = random.Random(seed), Model(next_id=1)
        ops = []
        for _ in range(400):
            op = plan_op(rng, model, cfg)
            if op.kind == "create":
                model.status[op.article_id] = 1
                model.next_id += 1
            if op.kind == "publish" and not op.fail_between:
                model.online.add(op.article_id)
            ops.append((op.kind, op.article_id, op.fail_between))
        return ops

    ops = plan(7)
    assert ops == plan(7)
    kinds = {k for k, _, _ in ops}
    assert {"create", "edit", "publish", "withdraw", "corrupt"} <= kinds
    assert any(k == "publish" and failed for k, _, failed in ops)
    assert ops[0][0] == "create"  # nothing to edit before the first article exists
    created = [i for k, i, _ in ops if k == "create"]
    assert created == list(range(1, len(created) + 1))


def test_status_text_names_leader_ledger_and_jobs() -> None:
    doc = {"version": "0.1.0", "generated_at": 1795000000.0,
           "leader_lock": {"name": "cdc-repair-leader", "holder_connection_id": 42},
           "checkpoints": [{"source": "author", "binlog_file": "binlog.000002", "binlog_pos": 1234, "gtid_set": "0-1-9",
                            "lag_seconds": 0.5, "updated_at": None}],
           "ledger": {"open_total": 3, "entries": [{"pair": "articles", "kind": "different", "status": "open",
                                                    "count": 3}]},
           "recent_repairs": [], "last_job_runs": {"lag_check": {"outcome": "ok", "started_at": None,
                                                                 "finished_at": None, "host": "h:1", "detail": ""}},
           "errors": []}
    text = render_text(doc)
    assert "held (connection 42)" in text
    assert "binlog.000002:1234" in text and "lag 0.5s" in text
    assert "ledger: 3 open" in text and "different" in text
    assert "lag_check" in text and "h:1" in text


def test_signals_set_events_and_restore_handlers() -> None:
    import os
    import signal

    from cdc_repair.runtime.signals import SignalEvents, install

    before = signal.getsignal(signal.SIGTERM)
    events = SignalEvents()
    restore = install(events)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert events.reload.is_set() and not events.stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert events.stop.is_set() and events.wake.is_set()
        assert events.received == [signal.SIGHUP, signal.SIGTERM]
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_daemon_builds_each_stage_with_its_own_arguments() -> None:
    """The composition root wires every stage explicitly: each tailer its capture source, the validator the
    shared state engine, the repairer the live settings, the scheduler the job context."""
    from cdc_repair.app.daemon import stage_specs
    from cdc_repair.config import settings_from_mapping
    from cdc_repair.runtime.jobs import JobContext
    from cdc_repair.runtime.reload import LiveSettings
    from cdc_repair.runtime.scheduler import SchedulerStage
    from cdc_repair.source.tailer import Tailer
    from cdc_repair.validate.consumer import IncrementalValidator

    raw = {"servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}, "b": {"dsn": "mysql://u:p@127.0.0.2:1/"}},
           "state": {"dsn": "mysql://u:p@127.0.0.1:1/s"}, "kafka": {"bootstrap_servers": ["x:1"]},
           "capture": [{"server": "a"}, {"server": "b", "server_id": 7}],
           "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"},
                      "target": {"server": "b", "table": "d.u"}}]}
    live = LiveSettings(settings_from_mapping(raw))
    ctx = JobContext(live, engine="E", host="t:1")  # type: ignore[arg-type]
    specs = {s.name: s for s in stage_specs(live, ctx)}
    assert {n: (s.leader_only, s.reload_sections) for n, s in specs.items()} == {
        "capture:a": (True, ()), "capture:b": (True, ()), "validate": (False, ("validator",)),
        "repair": (False, ("repair",)), "scheduler": (True, ("scheduler",))}
    tailers = [specs[n].factory() for n in ("capture:a", "capture:b")]
    assert [(type(t), t.source) for t in tailers] == [(Tailer, "a"), (Tailer, "b")]  # type: ignore[attr-defined]
    validator = specs["validate"].factory()
    assert isinstance(validator, IncrementalValidator) and validator._engine == "E"
    scheduler = specs["scheduler"].factory()
    assert isinstance(scheduler, SchedulerStage) and scheduler.ctx is ctx


def test_scheduler_stage_schedules_every_job_and_reschedules_live() -> None:
    import threading
    import time

    from cdc_repair.config import settings_from_mapping
    from cdc_repair.runtime.jobs import JobContext
    from cdc_repair.runtime.reload import LiveSettings
    from cdc_repair.runtime.scheduler import SchedulerStage

    raw = {"servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}}, "state": {"dsn": "mysql://u:p@127.0.0.1:1/s"},
           "kafka": {"bootstrap_servers": ["x:1"]},
           "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"},
                      "target": {"server": "a", "table": "d.u"}}],
           "scheduler": {"window_scan_interval_s": 3600, "retry_interval_s": 3600, "lag_check_interval_s": 3600}}
    settings = settings_from_mapping(raw)
    stage = SchedulerStage(JobContext(LiveSettings(settings), engine=None, host="t:1"))
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
                stage.health() and all(stage.health()["next_runs"].values())):
            time.sleep(0.02)
        assert set(stage.health()["next_runs"]) == {"full_validation", "window_scan", "cleanup", "lag_check",
                                                    "full_scan_request"}  # no repair job: the stage repairs
        job = stage._scheduler.get_job("lag_check")
        assert job.max_instances == 1 and job.coalesce is True and job.misfire_grace_time == 300
        raw["scheduler"]["lag_check_interval_s"] = 7
        stage.update_settings(settings_from_mapping(raw))
        assert stage._scheduler.get_job("lag_check").trigger.interval.total_seconds() == 7
        assert stage._scheduler.get_job("window_scan").trigger.interval.total_seconds() == 3600
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_status_text_says_n_a_and_why_when_the_ledger_was_not_read() -> None:
    why = "state database mysql://u:***@db:3306/s: MySQL error 2013: Lost connection"
    text = render_text({"ledger": None, "unavailable": {"ledger": why}, "checkpoints": [], "recent_repairs": None,
                        "job_runs": None})
    assert f"ledger: n/a ({why})" in text and "0 open" not in text
