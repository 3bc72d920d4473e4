"""The daemon: supervised stages + leader election + live reload + bounded graceful shutdown.

Non-leader stages (validators, repairers) run on every daemon: they scale by Kafka consumer group and by
claimed ledger rows. Leader-only stages (tailers, scheduler) run only while this daemon holds the leader lock.
Shutdown order: stop every stage in parallel (each one stops intake, flushes, commits offsets and saves its
checkpoint on its way out), then release the leader lock, all within `shutdown_timeout_s`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from cdc_repair.config import Settings
from cdc_repair.runtime.leader import LeaderElector, Lock
from cdc_repair.runtime.reload import LiveSettings
from cdc_repair.runtime.signals import SignalEvents
from cdc_repair.runtime.supervisor import Backoff, StageSpec, Supervisor

log = logging.getLogger(__name__)


def host_id() -> str:
    """This daemon's identity in job runs, ledger claims and status: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Daemon:
    def __init__(self, live: LiveSettings, specs: list[StageSpec], lock: Lock, *,
                 shutdown_timeout_s: float = 20.0, backoff: Backoff | None = None) -> None:
        self.live = live
        self.host = host_id()
        self.shutdown_timeout_s = shutdown_timeout_s
        self.supervisor = Supervisor(specs, backoff)
        self.elector = LeaderElector(lock, self._on_elected, self._on_lost,
                                     retry_s=lambda: self.live.current.ha.lock_retry_s)
        self._stop = threading.Event()  # set first: no leader stage starts any more
        # The elector keeps (and keeps checking) the lock until the leader stages have stopped; only then is
        # this event set and the lock released, so a standby never tails while this daemon still flushes.
        self._elector_stop = threading.Event()
        self._elector_thread = threading.Thread(target=self.elector.run, args=(self._elector_stop,), name="leader",
                                                daemon=True)
        self._leader_lock = threading.Lock()
        self.started_at: float | None = None
        self.stopped_cleanly: bool | None = None
        live.subscribe(self._on_reload)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.started_at = time.time()
        log.info("daemon %s starting (%d stages)", self.host, len(self.supervisor.specs))
        self.supervisor.start_all(leader=False)
        self._elector_thread.start()

    def run_until_stopped(self, events: SignalEvents) -> bool:
        """Main loop of `cdc-repair run`: reload on SIGHUP, stop on SIGTERM/SIGINT. True on a clean stop."""
        while not events.stop.is_set():
            events.wake.wait(1.0)
            events.wake.clear()
            if events.reload.is_set():
                events.reload.clear()
                log.info("SIGHUP: reloading %s", self.live.path)
                self.live.reload()
        return self.stop()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Graceful stop within the bound; True when every stage ended in time."""
        if self.stopped_cleanly is not None:  # already stopped (idempotent)
            return self.stopped_cleanly
        bound = self.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + bound
        log.info("stopping daemon (bound %.0fs)", bound)
        with self._leader_lock:
            self._stop.set()
            ok = self.supervisor.stop_all(max(0.1, deadline - time.monotonic() - 1.0))
        self._elector_stop.set()  # stages are down (or out of time): now release the leader lock
        if self._elector_thread.is_alive():
            self._elector_thread.join(max(0.1, deadline - time.monotonic()))
        self.stopped_cleanly = ok and not self._elector_thread.is_alive()
        log.info("daemon stopped (%s)", "clean" if self.stopped_cleanly else "some stages did not stop in time")
        return self.stopped_cleanly

    # ------------------------------------------------------------------ leader changes

    def _on_elected(self) -> None:
        with self._leader_lock:
            self.supervisor.set_role("leader")
            if self._stop.is_set():
                return
            for spec in self.supervisor.specs.values():
                if spec.leader_only:
                    self.supervisor.start(spec.name)

    def _on_lost(self) -> None:
        self.supervisor.stop_where(lambda s: s.leader_only, self.shutdown_timeout_s)
        self.supervisor.set_role("standby")

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader

    # ------------------------------------------------------------------ reload

    def _on_reload(self, settings: Settings, live_keys: list[str]) -> None:
        sections = {k.split(".", 1)[0].split("[", 1)[0] for k in live_keys}
        if "log" in sections:
            logging.getLogger().setLevel(settings.log.level)
        for spec in self.supervisor.specs.values():
            if not sections.intersection(spec.reload_sections):
                continue
            stage = self.supervisor.stage(spec.name)
            if stage is not None and not stage.update_settings(settings):
                log.info("restarting stage %s to apply the reloaded settings", spec.name)
                self.supervisor.stop(spec.name, self.shutdown_timeout_s)
                if not spec.leader_only or self.is_leader:
                    self.supervisor.start(spec.name)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "started_at": self.started_at,
            "leader": self.elector.is_leader,
            "leader_since": self.elector.since,
            "stages": self.supervisor.states(),
            "config": {"path": str(self.live.path) if self.live.path else None,
                       "generation": self.live.generation, "last_reload": self.live.last_reload},
        }
