"""Run each stage in its own thread; restart a failed stage with backoff; stop them within a bound.

A stage implements `cdc_repair.stage.Stage` (`run(stop_event)` returns when `stop_event` is set; `health()`).
The supervisor builds a fresh stage object (through its factory) for every attempt, so a restarted stage
starts with new connections.
A failure is logged with its stack, counted (`metrics.ERRORS`, `metrics.STAGE_RESTARTS`) and visible in
`states()`; the stage is retried after an exponential backoff and never takes the process down.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc_repair import metrics
from cdc_repair.errors import CdcRepairError, TerminalError
from cdc_repair.stage import Stage

log = logging.getLogger(__name__)

StageFactory = Callable[[], Stage]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: initial_s * multiplier**n, capped at max_s, with ±jitter (fraction)."""

    initial_s: float = 1.0
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 60.0  # a stage that ran this long before failing starts again from initial_s

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before restart number `failures` (1-based); pure apart from the jitter source."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))


@dataclass(frozen=True)
class StageSpec:
    name: str
    factory: StageFactory
    leader_only: bool = False  # runs only while this daemon holds the leader lock
    # Settings sections the stage reads; on a live reload touching one, the stage's `update_settings(new)` is
    # called, and when it returns False the stage is restarted (a fresh object built from the new settings).
    reload_sections: tuple[str, ...] = ()


@dataclass
class StageState:
    """What status shows about one stage (mutable; read under the supervisor's lock)."""

    name: str
    leader_only: bool
    status: str = "stopped"  # stopped | starting | running | backoff | stopping
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    started_at: float | None = None
    health: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "leader_only": self.leader_only, "status": self.status,
                "restarts": self.restarts, "failures": self.failures, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "started_at": self.started_at, "health": self.health}


class _Runner:
    """The thread of one stage: build, run, on failure log + count + back off, until stopped."""

    def __init__(self, spec: StageSpec, state: StageState, lock: threading.Lock, backoff: Backoff,
                 set_up: Callable[[str, bool], None]) -> None:
        self.set_up = set_up
        self.spec = spec
        self.state = state
        self.lock = lock
        self.backoff = backoff
        self.stop_event = threading.Event()
        self.current: Stage | None = None
        self.thread = threading.Thread(target=self._loop, name=f"stage-{spec.name}", daemon=True)

    def _set(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self.state, key, value)

    def _loop(self) -> None:
        consecutive = 0
        while not self.stop_event.is_set():
            began = time.monotonic()
            error = self._attempt()
            if self.stop_event.is_set():
                break
            consecutive = 1 if time.monotonic() - began > self.backoff.reset_after_s else consecutive + 1
            delay = self.backoff.delay(consecutive)
            if error is None:
                log.warning("stage %s returned without being stopped; restarting in %.1fs", self.spec.name, delay)
            metrics.STAGE_RESTARTS.labels(stage=self.spec.name).inc()
            self._set(status="backoff", restarts=self.state.restarts + 1)
            self.stop_event.wait(delay)
        self._set(status="stopped", started_at=None)
        self.set_up(self.spec.name, False)
        log.info("stage %s stopped", self.spec.name)

    def _attempt(self) -> BaseException | None:
        self._set(status="starting")
        try:
            stage = self.spec.factory()
            self.current = stage
            self._set(status="running", started_at=time.time())
            self.set_up(self.spec.name, True)
            stage.run(self.stop_event)
            return None
        except Exception as exc:  # the stage boundary: log with stack, count, retry
            kind = "terminal" if isinstance(exc, TerminalError) else type(exc).__name__
            if isinstance(exc, CdcRepairError):  # a known condition with its own clear message: one line
                log.error("stage %s failed: %s", self.spec.name, exc)
            else:
                log.exception("stage %s failed: %s", self.spec.name, exc)
            metrics.ERRORS.labels(stage=self.spec.name, kind=kind[:40]).inc()
            self._set(failures=self.state.failures + 1, last_error=f"{type(exc).__name__}: {exc}"[:500],
                      last_error_at=time.time())
            return exc
        finally:
            self.set_up(self.spec.name, False)
            self.current = None


class Supervisor:
    """Owns the stage threads. `start(name)` / `stop(name)` act on one stage; `stop_all(timeout_s)` on every one."""

    def __init__(self, specs: list[StageSpec], backoff: Backoff | None = None) -> None:
        self.specs = {s.name: s for s in specs}
        if len(self.specs) != len(specs):
            raise ValueError("stage names must be unique")
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._states = {s.name: StageState(s.name, s.leader_only) for s in specs}
        self._runners: dict[str, _Runner] = {}
        self._stopping: dict[str, threading.Thread] = {}  # threads told to stop, maybe still finishing
        # `cdc_repair_stage_up{stage, role}`: exactly one series per stage from the start (a standby's capture
        # too, at 0), relabelled when the daemon's role changes.
        self.role = "standby"
        self._up = {s.name: False for s in specs}
        for name in self._up:
            metrics.STAGE_UP.labels(stage=name, role=self.role).set(0)

    def _set_up(self, name: str, up: bool) -> None:
        with self._lock:
            self._up[name] = up
            metrics.STAGE_UP.labels(stage=name, role=self.role).set(1 if up else 0)

    def set_role(self, role: str) -> None:
        """leader | standby: move every stage's series to the new role label (the old series is removed)."""
        with self._lock:
            if role == self.role:
                return
            for name, up in self._up.items():
                with contextlib.suppress(KeyError):
                    metrics.STAGE_UP.remove(name, self.role)
                metrics.STAGE_UP.labels(stage=name, role=role).set(1 if up else 0)
            self.role = role

    def start(self, name: str, previous_timeout_s: float = 30.0) -> None:
        """Start the stage unless it is already running (idempotent).

        If an earlier instance is still finishing its stop (e.g. a tailer flushing after a lost leadership), wait
        for it first (up to `previous_timeout_s`), so two instances of one stage never overlap in this process.
        """
        previous = self._stopping.get(name)
        if previous is not None and previous.is_alive():
            previous.join(previous_timeout_s)
            if previous.is_alive():
                log.warning("stage %s: the previous instance has not stopped after %.0fs; starting anyway",
                            name, previous_timeout_s)
        with self._lock:
            runner = self._runners.get(name)
            if runner is not None and runner.thread.is_alive() and not runner.stop_event.is_set():
                return
            runner = _Runner(self.specs[name], self._states[name], self._lock, self.backoff, self._set_up)
            self._runners[name] = runner
        log.info("starting stage %s", name)
        runner.thread.start()

    def start_all(self, *, leader: bool) -> None:
        for spec in self.specs.values():
            if leader or not spec.leader_only:
                self.start(spec.name)

    def request_stop(self, name: str) -> threading.Thread | None:
        """Signal one stage to stop; returns its thread so callers can join several in parallel."""
        with self._lock:
            runner = self._runners.pop(name, None)
        if runner is None:
            return None
        if runner.thread.is_alive():
            self._set(name, status="stopping")
        self._stopping[name] = runner.thread
        runner.stop_event.set()
        return runner.thread

    def stop(self, name: str, timeout_s: float = 10.0) -> bool:
        """Stop one stage; True when its thread ended within the timeout."""
        thread = self.request_stop(name)
        return _join_all([thread] if thread else [], timeout_s)

    def stop_where(self, predicate: Callable[[StageSpec], bool], timeout_s: float) -> bool:
        threads = [t for s in list(self.specs.values()) if predicate(s) for t in [self.request_stop(s.name)] if t]
        return _join_all(threads, timeout_s)

    def stop_all(self, timeout_s: float) -> bool:
        """Stop every stage in parallel; True when all ended within `timeout_s`."""
        ok = self.stop_where(lambda s: True, timeout_s)
        if not ok:
            log.warning("stages still running after %.1fs: %s", timeout_s, ", ".join(self.running()))
        return ok

    def running(self) -> list[str]:
        with self._lock:
            return [n for n, r in self._runners.items() if r.thread.is_alive()] + [
                n for n, s in self._states.items() if s.status == "stopping"]

    def stage(self, name: str) -> Stage | None:
        """The live stage object of `name` (for health()), or None between attempts."""
        with self._lock:
            runner = self._runners.get(name)
        return runner.current if runner else None

    def states(self) -> list[dict[str, Any]]:
        out = []
        for name in self.specs:
            stage = self.stage(name)
            if stage is not None:
                with contextlib.suppress(Exception):  # a failing health() must not break the status document
                    self._set(name, health=dict(stage.health()))
            with self._lock:
                out.append(self._states[name].as_dict())
        return out

    def _set(self, name: str, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._states[name], key, value)


def _join_all(threads: list[threading.Thread], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)
