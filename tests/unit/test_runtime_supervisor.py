"""Supervisor, leader elector and daemon with small fake stages (no I/O)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cdc_repair import metrics
from cdc_repair.config import settings_from_mapping
from cdc_repair.runtime.daemon import Daemon
from cdc_repair.runtime.leader import LeaderElector
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.runtime.supervisor import Backoff, StageSpec, Supervisor
from cdc_repair.stage import Stage

FAST = Backoff(initial_s=0.01, max_s=0.05, multiplier=2, jitter=0)


def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Flaky(Stage):
    """Fails `fail_times` times (shared counter), then runs until stopped."""

    def __init__(self, counter: list[int], fail_times: int) -> None:
        self.counter = counter
        self.fail_times = fail_times

    def run(self, stop_event: threading.Event) -> None:
        self.counter[0] += 1
        if self.counter[0] <= self.fail_times:
            raise RuntimeError(f"boom {self.counter[0]}")
        stop_event.wait()


def restarts(stage: str) -> float:
    return metrics.REGISTRY.get_sample_value("cdc_repair_stage_restarts_total", {"stage": stage}) or 0.0


def test_backoff_grows_and_caps() -> None:
    b = Backoff(initial_s=1, max_s=10, multiplier=2, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    jittered = Backoff(initial_s=1, max_s=10, multiplier=2, jitter=0.5)
    assert jittered.delay(1, rand=lambda: 0.0) == 0.5 and jittered.delay(1, rand=lambda: 1.0) == 1.5


def test_failing_stage_is_restarted_counted_and_visible() -> None:
    counter = [0]
    before = restarts("flaky-a")
    sup = Supervisor([StageSpec("flaky-a", lambda: Flaky(counter, 3))], FAST)
    sup.start("flaky-a")
    assert wait_for(lambda: sup.states()[0]["status"] == "running" and counter[0] == 4)
    state = sup.states()[0]
    assert state["failures"] == 3 and state["restarts"] == 3
    assert state["last_error"] == "RuntimeError: boom 3"
    assert restarts("flaky-a") - before == 3
    assert sup.stop_all(2.0)
    assert sup.states()[0]["status"] == "stopped"


def test_one_failing_stage_does_not_disturb_another() -> None:
    good_runs = [0]
    bad = [0]
    sup = Supervisor([StageSpec("good", lambda: Flaky(good_runs, 0)),
                      StageSpec("bad", lambda: Flaky(bad, 10**6))], FAST)
    sup.start_all(leader=True)
    assert wait_for(lambda: bad[0] > 5)
    assert good_runs[0] == 1
    assert sup.stop_all(2.0)


def test_stop_all_reports_a_stage_that_ignores_stop() -> None:
    release = threading.Event()

    class Stubborn(Stage):
        def run(self, stop_event: threading.Event) -> None:
            release.wait(5)

    sup = Supervisor([StageSpec("stubborn", Stubborn)], FAST)
    sup.start("stubborn")
    assert wait_for(lambda: sup.states()[0]["status"] == "running")
    t0 = time.monotonic()
    assert sup.stop_all(0.2) is False
    assert time.monotonic() - t0 < 1.0
    release.set()


def test_start_is_idempotent_and_leader_only_stages_wait() -> None:
    runs = [0]
    sup = Supervisor([StageSpec("a", lambda: Flaky(runs, 0)), StageSpec("tailer", lambda: Flaky([0], 0), True)],
                     FAST)
    sup.start_all(leader=False)
    sup.start("a")
    assert wait_for(lambda: runs[0] == 1)
    time.sleep(0.05)
    assert runs[0] == 1
    assert {s["name"]: s["status"] for s in sup.states()}["tailer"] == "stopped"
    assert sup.stop_all(2.0)


class FakeLock:
    def __init__(self) -> None:
        self.free = True
        self.held = False
        self.fail_acquire = False

    def try_acquire(self) -> bool:
        if self.fail_acquire:
            raise ConnectionError("state server down")
        if self.free:
            self.free, self.held = False, True
            return True
        return False

    def still_held(self) -> bool:
        return self.held

    def release(self) -> None:
        if self.held:
            self.held, self.free = False, True


def test_elector_acquires_loses_and_reacquires() -> None:
    lock = FakeLock()
    events: list[str] = []
    el = LeaderElector(lock, lambda: events.append("elected"), lambda: events.append("lost"), lambda: 0.01)
    lock.free = False  # someone else holds it
    el.step()
    assert not el.is_leader and events == []
    lock.free = True
    el.step()
    assert el.is_leader and events == ["elected"]
    assert metrics.REGISTRY.get_sample_value("cdc_repair_leader") == 1
    el.step()  # keep-alive while held: nothing happens
    assert events == ["elected"]
    lock.held = False  # connection dropped
    lock.free = False
    el.step()
    assert not el.is_leader and events == ["elected", "lost"]
    assert metrics.REGISTRY.get_sample_value("cdc_repair_leader") == 0
    lock.fail_acquire = True
    el.step()  # errors while standby are survived
    assert not el.is_leader and el.last_error == "state server down"


def _settings() -> object:
    return settings_from_mapping({
        "servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}},
        "state": {"dsn": "mysql://u:p@127.0.0.1:1/s"},
        "kafka": {"bootstrap_servers": ["x:1"]},
        "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"},
                   "target": {"server": "a", "table": "d.u"}}],
        "ha": {"lock_retry_s": 0.02},
    })


def test_daemon_runs_leader_stages_only_while_leader() -> None:
    lock = FakeLock()
    tailer_runs, validator_runs = [0], [0]
    specs = [StageSpec("validator", lambda: Flaky(validator_runs, 0)),
             StageSpec("tailer", lambda: Flaky(tailer_runs, 0), leader_only=True)]
    live = LiveSettings(_settings())  # type: ignore[arg-type]
    lock.free = False
    daemon = Daemon(live, specs, lock, shutdown_timeout_s=2, backoff=FAST)
    daemon.start()
    assert wait_for(lambda: validator_runs[0] == 1)
    time.sleep(0.1)
    assert tailer_runs[0] == 0 and not daemon.is_leader  # standby
    lock.free = True  # the holder died
    assert wait_for(lambda: daemon.is_leader and tailer_runs[0] == 1)
    stages = {s["name"]: s["status"] for s in daemon.status()["stages"]}
    assert stages == {"validator": "running", "tailer": "running"}
    lock.held = False  # lock lost: leader stages stop at once, the validator keeps running
    assert wait_for(lambda: {s["name"]: s["status"] for s in daemon.status()["stages"]}["tailer"] == "stopped")
    assert {s["name"]: s["status"] for s in daemon.status()["stages"]}["validator"] == "running"
    lock.free = True  # free again: re-elected, the tailer starts afresh
    assert wait_for(lambda: daemon.is_leader and tailer_runs[0] == 2)
    assert daemon.stop(3.0)
    assert lock.free and not lock.held  # released on shutdown
    assert {s["name"]: s["status"] for s in daemon.status()["stages"]} == {"validator": "stopped", "tailer": "stopped"}


def test_find_overlaps_flags_concurrent_runs_of_one_job() -> None:
    import datetime as dt

    from cdc_repair.runtime.jobs import find_overlaps

    t = dt.datetime(2026, 1, 1, 0, 0, 0)
    s = dt.timedelta(seconds=1)
    ok = [{"id": 1, "job": "a", "started_at": t, "finished_at": t + s},
          {"id": 2, "job": "a", "started_at": t + s, "finished_at": t + 2 * s},
          {"id": 3, "job": "b", "started_at": t, "finished_at": t + 5 * s}]
    assert find_overlaps(ok) == []
    bad = [*ok, {"id": 4, "job": "b", "started_at": t + 2 * s, "finished_at": t + 3 * s},
           {"id": 5, "job": "c", "started_at": t, "finished_at": None},
           {"id": 6, "job": "c", "started_at": t + s, "finished_at": t + s}]
    found = find_overlaps(bad)
    assert len(found) == 2 and found[0].startswith("b: run 3") and found[1].startswith("c: run 5")


def test_reload_updates_stages_in_place_or_restarts_them(tmp_path: object) -> None:
    lock = FakeLock()
    updated: list[float] = []
    built = {"plain": 0}

    class Updatable(Flaky):
        def update_settings(self, settings: object) -> bool:
            updated.append(settings.validator.settle_delay_s)  # type: ignore[attr-defined]
            return True

    def plain() -> Flaky:
        built["plain"] += 1
        return Flaky([0], 0)

    specs = [StageSpec("updatable", lambda: Updatable([0], 0), reload_sections=("validator",)),
             StageSpec("plain", plain, reload_sections=("validator",)),
             StageSpec("other", lambda: Flaky([0], 0), reload_sections=("repair",))]
    old = _settings()
    live = LiveSettings(old)  # type: ignore[arg-type]
    daemon = Daemon(live, specs, lock, shutdown_timeout_s=2, backoff=FAST)
    daemon.start()
    assert wait_for(lambda: all(s["status"] == "running" for s in daemon.status()["stages"]))
    new = old.model_copy(update={"validator": old.validator.model_copy(update={"settle_delay_s": 9.0})})  # type: ignore[attr-defined]
    live.apply(new, ["validator.settle_delay_s"])
    assert updated == [9.0]  # told in place
    assert wait_for(lambda: built["plain"] == 2)  # rebuilt from the new settings
    assert live.current.validator.settle_delay_s == 9.0
    assert daemon.stop(3.0)


def test_a_restarted_stage_never_overlaps_its_previous_instance() -> None:
    running = []
    overlaps = []
    lock = threading.Lock()

    class Slow(Stage):
        def run(self, stop_event: threading.Event) -> None:
            with lock:
                if running:
                    overlaps.append(1)
                running.append(1)
            stop_event.wait()
            time.sleep(0.3)  # flushing on the way out
            with lock:
                running.pop()

    sup = Supervisor([StageSpec("slow", Slow)], FAST)
    sup.start("slow")
    assert wait_for(lambda: running == [1])
    sup.request_stop("slow")
    sup.start("slow")  # e.g. re-elected right away
    assert wait_for(lambda: running == [1])
    assert overlaps == []
    assert sup.stop_all(2.0)


def test_stage_up_has_one_series_per_stage_that_follows_the_role() -> None:
    class Idle(Stage):
        def run(self, stop_event: threading.Event) -> None:
            stop_event.wait()

    def series() -> dict[tuple[str, str], float]:
        return {(s.labels["stage"], s.labels["role"]): s.value for m in metrics.REGISTRY.collect()
                if m.name == "cdc_repair_stage_up" for s in m.samples if s.labels["stage"].startswith("role-t-")}

    sup = Supervisor([StageSpec("role-t-capture", Idle, leader_only=True), StageSpec("role-t-validate", Idle)])
    assert series() == {("role-t-capture", "standby"): 0, ("role-t-validate", "standby"): 0}
    sup.start("role-t-validate")
    deadline = time.monotonic() + 10
    while series().get(("role-t-validate", "standby")) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    sup.set_role("leader")
    assert series() == {("role-t-capture", "leader"): 0, ("role-t-validate", "leader"): 1}
    sup.set_role("standby")
    assert series() == {("role-t-capture", "standby"): 0, ("role-t-validate", "standby"): 1}
    assert sup.stop_all(5)
    assert series() == {("role-t-capture", "standby"): 0, ("role-t-validate", "standby"): 0}
