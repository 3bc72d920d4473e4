"""Apply a round's guarded writes in batches, on `repair.threads` writer threads (I/O).

Why batches and threads: one local transaction per batch (`repair.batch_size` rows) amortises the round trips
and the commit, and with several batches in flight the server works on one while this process prepares the
next. Batches hold disjoint keys (sorted, contiguous key ranges), so their transactions never wait for each
other (and at READ COMMITTED take no gap locks: `locking.py`). Each writer thread has its own connections.
The throttle (`repair.rate_limit_per_s`, `repair.busy_threads_running`) is applied before every batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cdc_repair.config import PairConfig, Settings
from cdc_repair.repair.actions import RepairAction, Side
from cdc_repair.repair.executor import Applied, Outcome, RowServer, apply_batch
from cdc_repair.repair.store import new_id
from cdc_repair.repair.throttle import RateLimiter, wait_while_busy

Done = tuple[list[Outcome], float]  # a batch's outcomes and its seconds


class BatchSink(Protocol):
    """Takes each finished batch on the calling thread (results, metrics, repair_log) and flushes at the end."""

    def consume(self, outcomes: list[Outcome], elapsed: float) -> list[Applied]: ...

    def flush(self) -> None: ...


class BatchWriter:
    """Runs batches of guarded writes for one process (the calling thread accounts, writer threads write)."""

    def __init__(self, settings: Settings, server: Callable[[str], RowServer], run_id: str, *,
                 limiters: dict[str, RateLimiter], stop: threading.Event | None = None,
                 before_write: Callable[[Sequence[RepairAction]], None] | None = None) -> None:
        self.settings = settings
        self._server = server  # the calling thread's connection per server name
        self.run_id = run_id
        self.limiters = limiters  # per pair; a worker keeps them across passes
        self.stop = stop
        self.before_write = before_write  # test hook: runs between planning a batch and applying it
        self._local = threading.local()  # per writer thread: its own connections
        self._thread_servers: list[RowServer] = []
        self._thread_servers_lock = threading.Lock()

    def close(self) -> None:
        for server in self._thread_servers:
            server.close()
        self._thread_servers.clear()
        self._local = threading.local()

    def apply(self, pair: PairConfig, actions: Sequence[RepairAction], sink: BatchSink) -> list[Applied]:
        """Write `actions` (each side on its own server) and hand every finished batch to `sink`."""
        applied: list[Applied] = []
        groups: dict[Side, list[RepairAction]] = {}
        for action in actions:
            groups.setdefault(action.side, []).append(action)
        for side, group in groups.items():
            name = pair.target.server if side is Side.TARGET else pair.source.server
            try:
                applied += self._apply_side(pair, name, _by_key(group), sink)
            finally:
                sink.flush()
        return applied

    def _apply_side(self, pair: PairConfig, name: str, actions: list[RepairAction],
                    sink: BatchSink) -> list[Applied]:
        cfg = self.settings.repair
        server = self._server(name)
        limiter = self.limiters.setdefault(pair.name, RateLimiter(cfg.rate_limit_per_s))
        batches = [actions[s:s + cfg.batch_size] for s in range(0, len(actions), cfg.batch_size)]
        threads = max(1, min(cfg.threads, len(batches)))
        pool = ThreadPoolExecutor(threads, thread_name_prefix="repair") if threads > 1 else None
        pending: deque[Future[Done]] = deque()
        applied: list[Applied] = []
        try:
            for batch in batches:
                limiter.acquire(len(batch))
                wait_while_busy(server.threads_running, cfg.busy_threads_running, stop=self.stop)
                if self.before_write is not None:
                    self.before_write(batch)
                if pool is None:
                    applied += sink.consume(*self._run(server, batch))
                    continue
                pending.append(pool.submit(self._run_threaded, name, batch))
                while len(pending) > threads + 1:  # keep the writers busy while this thread accounts
                    applied += sink.consume(*pending.popleft().result())
            while pending:
                applied += sink.consume(*pending.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return applied

    def _run(self, server: RowServer, batch: Sequence[RepairAction]) -> Done:
        t0 = time.perf_counter()
        outcomes = apply_batch(server, batch, [new_id("rp") for _ in batch], run_id=self.run_id)
        return outcomes, time.perf_counter() - t0

    def _run_threaded(self, name: str, batch: Sequence[RepairAction]) -> Done:
        """The same, on this writer thread's own connection (batches hold disjoint keys: no lock conflicts)."""
        servers: dict[str, RowServer] | None = getattr(self._local, "servers", None)
        if servers is None:
            servers = self._local.servers = {}
        if name not in servers:
            servers[name] = RowServer(name, self.settings.server_dsn(name))
            with self._thread_servers_lock:
                self._thread_servers.append(servers[name])
        return self._run(servers[name], batch)


def _by_key(actions: list[RepairAction]) -> list[RepairAction]:
    """Contiguous key ranges per batch: concurrent batches rarely meet in a gap."""
    try:
        return sorted(actions, key=lambda a: tuple(v for _, v in a.key))
    except TypeError:  # mixed key types (NULL, str vs int): keep the ledger order
        return actions
