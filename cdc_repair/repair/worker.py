"""The repair stage for the daemon: claim due ledger entries and repair them, in a loop; and that loop's one
claim → execute → finish step (`repair_claimed`), which `cdc-repair repair --execute` runs too.

For the daemon engineer (stable API):

    worker = RepairWorker(settings)            # optional: worker_id="host:pid", store=StateStore(...), live=...
    stats = worker.run_due(limit=100)          # one pass: claim ≤ limit due entries, repair, close/retry/park
    worker.run(stop_event)                     # loop until stop_event is set (never raises)
    worker.health() -> dict                    # {"ok", "last_run_at", "last_error", "totals", ...}
    worker.close()

`run_due` claims entries with status `open` whose `next_retry_at` is due, plus claims older than
`repair.claim_timeout_s` (a dead worker's), with a guarded UPDATE, so several workers (or a worker and the
CLI) never repair the same key at once. Each pair uses its `strategy` (or `repair.strategy`). Failed repairs
go back to `open` with exponential backoff (`repair.backoff`) and are parked `failed` after
`repair.max_attempts`; dirty compensations are parked at once (an operator decides).
`run` sleeps `scheduler.retry_interval_s` between passes that found nothing.

This stage is the daemon's one driver of automatic repairs (the scheduler has no repair job). `repair.auto_repair:
false` is checked by `run_due` itself, before anything is claimed: no pass writes a row or touches the ledger
while it is off. With `live` (the daemon's `LiveSettings`) every pass reads the current settings, so a SIGHUP
switches auto_repair, strategy, batch size or backoff without a restart.

One failing pass is logged with its stack, counted in `metrics.ERRORS{stage="repair"}`, and retried with
backoff; it never ends the loop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cdc_repair.config import PairConfig, Settings
from cdc_repair.errors import TransientError
from cdc_repair.metrics import ERRORS
from cdc_repair.model.history import ChangeHistory
from cdc_repair.model.ledger import LedgerFilter as Filters
from cdc_repair.model.ledger import LedgerStatus
from cdc_repair.repair.actions import Strategy
from cdc_repair.repair.repairer import KeyResult, Repairer, WorkItem
from cdc_repair.repair.runs import FINISHED, Heartbeat
from cdc_repair.repair.store import StateStore, new_id
from cdc_repair.repair.throttle import RateLimiter
from cdc_repair.stage import Stage

log = logging.getLogger(__name__)


class SettingsSource(Protocol):
    """Where live settings come from (the daemon's `runtime.reload.LiveSettings`; repair/ does not import it)."""

    @property
    def current(self) -> Settings: ...


@dataclass
class RepairStats:
    claimed: int = 0
    repaired: int = 0
    resolved: int = 0
    retry: int = 0
    parked: int = 0
    released: int = 0

    def add(self, other: RepairStats) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


CHUNK_KEYS = 2000  # keys executed (and their rows held in memory) at a time


@dataclass
class Finished:
    """What `repair_claimed` did: each key's result, and how many entries went back to retry or were parked."""

    results: list[KeyResult] = field(default_factory=list)
    retry: int = 0
    parked: int = 0


def repair_claimed(repairer: Repairer, store: StateStore, token: str, pair: PairConfig, items: list[WorkItem],
                   strategy: Strategy, *, on_chunk: Callable[[int], None] | None = None) -> Finished:
    """The one claim → execute → finish loop, for the daemon's worker and `cdc-repair repair --execute`.

    `items` were claimed under `token`. They are executed CHUNK_KEYS at a time (bounded memory), and each chunk's
    entries are closed, retried later or parked (`Repairer.finish`) before the next chunk starts. When a chunk
    fails, every entry not finished yet is given back (`open`) before the error goes on: nothing stays claimed
    by a run that gave up. `on_chunk(keys done)` is called after each chunk (the CLI's progress display)."""
    out = Finished()
    for start in range(0, len(items), CHUNK_KEYS):
        chunk = items[start:start + CHUNK_KEYS]
        try:
            results = repairer.execute(pair, chunk, strategy)
            done = repairer.finish(token, chunk, results)
        except Exception:
            store.release(token, [i.entry.id for i in items[start:] if i.entry])
            raise
        out.results.extend(results)
        out.retry += done["retry"]
        out.parked += done["parked"]
        if on_chunk is not None:
            on_chunk(start + len(chunk))
    return out


class RepairWorker(Stage):
    """Claims due ledger entries and repairs them (see module docstring)."""

    def __init__(self, settings: Settings, *, worker_id: str | None = None, store: StateStore | None = None,
                 live: SettingsSource | None = None,
                 history: Callable[[Settings], ChangeHistory] | None = None) -> None:
        self._settings = settings
        self._history = history  # makes the binlog reader compensation needs (source/history.py, from app/daemon.py)
        self._live = live
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = store or StateStore(settings.state.dsn)
        self.totals = RepairStats()
        self.last_run_at: float | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.passes = 0
        self._limiters: dict[str, RateLimiter] = {}  # repair.rate_limit_per_s holds across passes
        # One registered run per worker, with a heartbeat: if this daemon dies or loses the state database
        # mid-pass, other workers take its claims over after repair.dead_after_s instead of claim_timeout_s,
        # and if it lives on, its next pass finds its own leftover claims under the same token.
        self.run_id = new_id("worker")
        self.token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"[:128]
        self._heartbeat: Heartbeat | None = None

    @property
    def settings(self) -> Settings:
        """The settings in force now (re-read on every pass when the daemon passed `live`)."""
        return self._live.current if self._live is not None else self._settings

    def update_settings(self, settings: Settings) -> bool:
        """Live reload: the next pass uses `settings` (no restart needed)."""
        if self._live is None:
            self._settings = settings
        return True

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop(FINISHED)
            self._heartbeat = None
        self.store.close()

    def _registered_token(self) -> str:
        """The worker's claim token, registered (with a heartbeat thread) before its first claim."""
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.settings.state.dsn, self.run_id, self.token, "daemon",
                                        self.settings.repair).start()
        return self.token

    def run_due(self, limit: int | None = None, *, stop: threading.Event | None = None) -> RepairStats:
        """One pass: claim up to `limit` due entries, repair them pair by pair, update the ledger.
        With `repair.auto_repair: false` nothing is claimed or written (an empty pass)."""
        settings = self.settings  # one snapshot per pass: a reload in the middle does not mix two configs
        cfg = settings.repair
        if not cfg.auto_repair:
            self._done(RepairStats())
            return RepairStats()
        token = self._registered_token()
        stats = RepairStats()
        self.last_run_at = time.time()
        entries = self.store.claim(token, Filters(), statuses=(LedgerStatus.OPEN,), due=True,
                                   limit=limit or cfg.batch_size, stale_after_s=cfg.claim_timeout_s,
                                   dead_after_s=cfg.dead_after_s)
        stats.claimed = len(entries)
        if not entries:
            self._done(stats)
            return stats
        pairs = {p.name: p for p in settings.pairs}
        repairer = Repairer(settings, self.store, run_id=new_id("batch"), stop=stop, limiters=self._limiters,
                            history=self._history(settings) if self._history is not None else None)
        try:
            by_pair: dict[str, list[WorkItem]] = {}
            for e in entries:
                by_pair.setdefault(e.pair, []).append(WorkItem(e.pair, e.pk, e))
            for name, items in by_pair.items():
                pair = pairs.get(name)
                if pair is None:
                    log.warning("ledger has %d entries of pair '%s', which is not configured: left open",
                                len(items), name)
                    stats.released += self.store.release(token, [i.entry.id for i in items if i.entry])
                    continue
                done = repair_claimed(repairer, self.store, token, pair, items, repairer.strategy_for(pair))
                stats.repaired += sum(1 for r in done.results if r.status == "repaired")
                stats.resolved += sum(1 for r in done.results if r.status == "resolved")
                stats.retry += done.retry
                stats.parked += done.parked
        finally:
            repairer.close()
        self._done(stats)
        return stats

    def _done(self, stats: RepairStats) -> None:
        self.totals.add(stats)
        self.passes += 1
        self.last_ok_at = time.time()
        self.last_error = None

    def run(self, stop_event: threading.Event) -> None:
        """Repair due entries until `stop_event` is set; never raises."""
        failures = 0
        while not stop_event.is_set():
            if not self.settings.repair.auto_repair:
                stop_event.wait(self.settings.scheduler.retry_interval_s)
                continue
            try:
                limit = self.settings.repair.batch_size * 10
                stats = self.run_due(limit, stop=stop_event)
                failures = 0
                if stats.claimed >= limit:
                    continue  # more is due: go on at once
                stop_event.wait(self.settings.scheduler.retry_interval_s)
            except Exception as exc:
                failures += 1
                self.last_error = str(exc)
                kind = "transient" if isinstance(exc, TransientError) else "terminal"
                ERRORS.labels("repair", kind).inc()
                delay = min(60.0, self.settings.scheduler.retry_interval_s * 2 ** min(failures, 6))
                log.exception("repair pass failed (%s); retrying in %.0f s", exc, delay)
                self.store.close()
                stop_event.wait(delay)

    def health(self) -> dict[str, Any]:
        return {"ok": self.last_error is None, "worker_id": self.worker_id, "passes": self.passes,
                "last_run_at": self.last_run_at, "last_ok_at": self.last_ok_at, "last_error": self.last_error,
                "totals": asdict(self.totals), "auto_repair": self.settings.repair.auto_repair}
