"""Full scan: keyset chunks, server-side COUNT + exact SUM of mixed 64-bit row hashes (see `checksum`) per chunk
on both sides, bisection of dirty chunks, per-row hash merge join, `check` of the differing rows, re-checks,
ledger. Resumable; a resumed scan reports the whole scan's differences (`scan_finding`).

In-process API (the daemon's scheduler and the CLI call it):

    run_full_scan(settings, pair_name=None, resume=False, *, where=None, on_progress=None, stop=None,
                  engine=None) -> ScanReport

- `pair_name`: one pair, or every pair when None. `where`: an extra SQL condition applied to both tables
  (operator input, like pt-table-checksum's --where; it is not validated).
- `resume`: continue each pair's latest unfinished scan (state table `scan_progress`) after its last finished
  chunk; a pair whose latest scan is done starts a new scan.
- `on_progress(pair, rows_done, rows_estimated)`: called after every chunk (the CLI draws a rich bar).
- `stop`: a threading.Event; when set the scan stops after the current chunk, leaves its progress
  resumable (status `failed`), and returns what it found so far (`ScanReport.interrupted`).
- One scan per pair at a time (a named lock on the state server, released when the scanner dies): a second
  one raises TransientError naming the pair.
- Confirmed differences (persisting across `validator.rechecks` re-checks `recheck_delay_s` apart) are in the
  ledger (detected_by `full_scan`) before the chunk's progress is saved. Rows found consistent by `check`
  resolve their open ledger entries.

The pieces, pure apart from I/O: `scan_sizer` (chunk size, bucket width, which keys a compare names),
`scan_sides` (connections, types, each side's row hash, the strategy), `scan_drill` (one chunk's checksums and
the drill-down: the keyset strategy bisects, the bucket strategy re-reads dirty buckets), `scan_throttle`
(rows/s cap, pause while `Threads_running` is high), `scan_keys` (differing keys through the shared
`confirmer.KeyConfirmer`: check → re-check → record; the resume point they hold back), `scan_store` (lock,
progress, findings). This module is the chunk loop
that drives them: the source reads chunk i+1 while the target checksums chunk i.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.model.keys import parse_pk, pk_string
from cdc_repair.model.verdict import MISMATCH_KINDS, Verdict
from cdc_repair.validate.scan_drill import Drill, SourceChunk, Strategy, is_dirty, strategy
from cdc_repair.validate.scan_keys import Frontier, ScanKeys
from cdc_repair.validate.scan_sides import Sides, estimate_rows, open_sides
from cdc_repair.validate.scan_sizer import ChunkSizer
from cdc_repair.validate.scan_store import LatestWriter, LedgerScanStore, PairLock, ScanStore
from cdc_repair.validate.scan_throttle import Throttle

if TYPE_CHECKING:  # imports SQLAlchemy, which a scan loads in the background (see `_open_store`)
    from cdc_repair.state.engine import StateEngine

log = logging.getLogger(__name__)

MAX_REPORTED = 100_000  # confirmed verdicts kept for the report; `diffs` counts every one

Key = tuple[Any, ...]
Progress = Callable[[str, int, int], None]


@dataclass
class PairScanResult:
    """One pair's scan (cumulative across resumes for rows/chunks/diffs)."""

    pair: str
    scan_id: str
    rows: int = 0
    chunks: int = 0
    dirty_chunks: int = 0
    bisections: int = 0
    rows_compared: int = 0  # rows whose per-row hashes were merge-joined
    rows_checked: int = 0  # keys sent to check()
    diffs: dict[str, int] = field(default_factory=dict)  # confirmed, by kind
    confirmed: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0
    throttled_s: float = 0.0
    resumed: bool = False
    interrupted: bool = False

    @property
    def differences(self) -> int:
        return sum(self.diffs.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "scan_id": self.scan_id, "rows": self.rows, "chunks": self.chunks,
                "dirty_chunks": self.dirty_chunks, "bisections": self.bisections,
                "rows_compared": self.rows_compared, "rows_checked": self.rows_checked,
                "diffs": dict(self.diffs), "differences": self.differences, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s, 1), "throttled_s": round(self.throttled_s, 3),
                "resumed": self.resumed, "interrupted": self.interrupted,
                "found": [{"key": list(v.key), "kind": v.kind, "columns": list(v.columns)} for v in self.confirmed]}


@dataclass
class ScanReport:
    pairs: list[PairScanResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(p.differences for p in self.pairs)

    @property
    def interrupted(self) -> bool:
        return any(p.interrupted for p in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"scan": "full", "seconds": round(self.seconds, 3), "differences": self.differences,
                "interrupted": self.interrupted, "pairs": [p.to_dict() for p in self.pairs]}


def run_full_scan(settings: Settings, pair_name: str | None = None, resume: bool = False, *,
                  where: str | None = None, on_progress: Progress | None = None,
                  stop: threading.Event | None = None, engine: StateEngine | None = None,
                  store: ScanStore | None = None) -> ScanReport:
    """Scan one pair or all pairs (see module docstring). `store` decides where progress and findings go
    (default: the state database's ledger; `ReadOnlyScanStore` for a compare that writes nothing)."""
    pairs = [settings.pair(pair_name)] if pair_name else list(settings.pairs)
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan-state")
    opened = runner.submit(_open_store, settings, engine, store)
    report = ScanReport()
    t0 = time.monotonic()
    try:
        for pair in pairs:
            lock = PairLock(runner, opened, pair.name)
            try:
                report.pairs.append(_PairScan(settings, pair, lock, where, on_progress, stop).run(resume))
            finally:
                lock.release()
            if stop is not None and stop.is_set():
                break
    finally:
        if engine is None and store is None and opened.exception() is None:
            own = opened.result()
            assert isinstance(own, LedgerScanStore)
            own.engine.dispose()
        runner.shutdown()
    report.seconds = time.monotonic() - t0
    return report



def _open_store(settings: Settings, engine: StateEngine | None, store: ScanStore | None) -> ScanStore:
    """The given store, or the ledger on the given (else a new) state engine. Runs in the background: the
    state package's imports (SQLAlchemy) and the connection overlap the scan's first chunks."""
    if store is not None:
        return store
    from cdc_repair.state.engine import state_engine

    return LedgerScanStore(engine if engine is not None else state_engine(settings.state.dsn))


# ---------------------------------------------------------------- one pair


class _PairScan:
    """One pair's scan: the chunk loop over a `Strategy`, the differing keys through a `KeyConfirmer`."""

    def __init__(self, settings: Settings, pair: PairConfig, lock: PairLock, where: str | None,
                 on_progress: Progress | None, stop: threading.Event | None) -> None:
        self.settings, self.pair, self.lock = settings, pair, lock
        self._start: tuple[str, int] | None = None  # (scan_id, estimate): a new scan not yet in the store
        self._start_lock = threading.Lock()
        self.where, self.on_progress, self.stop = where, on_progress, stop
        self.cfg = settings.validator.full_scan
        self._before = (0, 0)  # rows and chunks counted before the current chunk
        self.last_upper: Key | None = None
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"scan-{pair.name}")
        self._saver = LatestWriter(self._write)
        self.throttle = Throttle(settings, pair, stop)

    def run(self, resume: bool) -> PairScanResult:
        state = self.lock.store().resumable(self.pair.name) if resume else None
        scan_id = state.scan_id if state else uuid.uuid4().hex[:16]
        res = PairScanResult(self.pair.name, scan_id, resumed=state is not None)
        self.where = state.where_clause if state else self.where
        lower: Key | None = None
        if state is not None:
            res.rows, res.chunks = state.rows, state.chunks
            lower = parse_pk(state.last_key) if state.last_key else None
            log.info("resuming full scan %s of pair %s after key %s (%d chunks done)", scan_id, self.pair.name,
                     state.last_key, state.chunks)
        sides = open_sides(self.settings, self.pair)
        self.keys = self._keys(scan_id, sides)
        t0 = time.monotonic()
        estimate = estimate_rows(sides)
        if state is None:
            self._start = (scan_id, estimate)  # written with the first store call, once the lock is held
        else:
            self.lock.store().set_total(scan_id, self.pair.name, estimate or None)  # status: rows done of total
        drill = Drill(self.pair, sides, self.where, self.pool)
        try:
            self._loop(res, strategy(drill, sides.buckets), lower, estimate)
            self.keys.drain()
            res.interrupted = self._stopped()
            self._save(res, None if not res.interrupted else self.keys.frontier(self.last_upper), final=True)
        except BaseException:
            self._failed(scan_id)
            raise
        finally:
            res.seconds = time.monotonic() - t0
            res.bisections, res.rows_compared = drill.bisections, drill.rows_compared
            if self.keys.confirmer is not None:
                res.rows_checked = self.keys.confirmer.keys_checked
                res.diffs, res.confirmed = self.keys.confirmer.diffs, self.keys.confirmer.confirmed
            self._saver.close()
            self.pool.shutdown(wait=True)
            sides.close()
        if res.resumed:
            self._whole_scan(res)
        store = self._store()
        from cdc_repair.state import scan_progress  # imported by the store's opening: no cost here

        store.finish(scan_id, self.pair.name, scan_progress.FAILED if res.interrupted else scan_progress.DONE)
        metrics.SCAN_ROWS_PER_SECOND.labels(self.pair.name).set(res.rows_per_s)
        return res

    def _store(self) -> ScanStore:
        """The store once the lock is ours; a new scan's row is started (with its row estimate) on first use."""
        store = self.lock.store()
        with self._start_lock:
            if self._start is not None:
                scan_id, estimate = self._start
                store.start(scan_id, self.pair.name, self.where)
                store.set_total(scan_id, self.pair.name, estimate or None)  # status: rows done of total
                self._start = None
        return store

    def _failed(self, scan_id: str) -> None:
        """Mark the scan failed, if it ever got into the store (a scan whose lock was taken never did)."""
        try:
            store = self.lock.store()
        except BaseException:
            return
        if self._start is None:
            from cdc_repair.state import scan_progress

            store.finish(scan_id, self.pair.name, scan_progress.FAILED)

    def _keys(self, scan_id: str, sides: Sides) -> ScanKeys:
        """Differing keys go through the confirmer on the sides' drill-down connections; every verdict goes to
        the store (mismatches also as findings of this scan)."""
        def record(verdicts: list[Verdict]) -> None:
            self._store().record(scan_id, self.pair.name, verdicts,
                                 [v.pk for v in verdicts if v.kind in MISMATCH_KINDS])

        return ScanKeys(self.settings, self.pair, lambda: (sides.source.conn, sides.target.conn), record)

    def _whole_scan(self, res: PairScanResult) -> None:
        """A resumed scan reports every difference of the whole scan: also those confirmed before the
        interruption (from `scan_finding`), as long as their ledger entry is still active."""
        diffs, items = self._store().findings(res.scan_id, self.pair.name, MAX_REPORTED)
        res.diffs = diffs
        res.confirmed = [Verdict(self.pair.name, parse_pk(f.pk), f.kind, f.columns) for f in items]

    # -- the chunk loop

    def _loop(self, res: PairScanResult, strat: Strategy, lower: Key | None, estimate: int) -> None:
        """Pipelined: while the target checksums chunk i, the source already reads chunk i+1 (one statement
        per chunk per side: the source's also yields the chunk's upper key)."""
        sizer = ChunkSizer(self.cfg.chunk_rows, self.cfg.chunk_time_target_s, self.cfg.max_chunk_rows,
                           strat.caps_dirty)
        started = time.monotonic()
        rows_at_start = res.rows
        self.last_upper = lower
        if self._stopped():
            return
        fut: Future[SourceChunk] | None = self.pool.submit(strat.source, lower, sizer.size)
        while fut is not None:
            chunk = fut.result()
            fut_t = self.pool.submit(strat.target, lower, chunk)
            size = sizer.timed(chunk.rows, chunk.seconds)
            fut = None
            if chunk.upper is not None and not self._stopped():
                res.throttled_s += self.throttle.wait(res.rows - rows_at_start, started)
                fut = self.pool.submit(strat.source, chunk.upper, size)
            target = fut_t.result()
            n = max(chunk.rows, sum(c for c, _ in target.values()))
            self._before = (res.rows, res.chunks)
            res.chunks += 1
            res.rows += n
            metrics.SCAN_ROWS.labels(self.pair.name, "full").inc(n)
            dirty = is_dirty(chunk, target)
            metrics.SCAN_CHUNKS.labels(self.pair.name, "dirty" if dirty else "clean").inc()
            keys: list[Key] = []
            if dirty:
                res.dirty_chunks += 1
                keys = strat.drill(lower, chunk, target)
                self.keys.found(keys, lower, self._before)
            sizer.compared(n, len(keys), dirty)
            self._finish_chunk(res, chunk.upper, estimate)
            if fut is not None and self._stopped():
                fut.result()  # let the in-flight read finish; its chunk is not counted
                fut = None
            lower = chunk.upper

    def _finish_chunk(self, res: PairScanResult, upper: Key | None, estimate: int) -> None:
        """After a chunk: background work, the resume frontier, progress and its metric. With a progress display
        the first one waits for the store (the next chunk's source query runs meanwhile), so a scan that cannot
        record (state database down, lock taken) stops with its one error line before any progress is shown;
        without one (`--json`, the daemon) the scan goes on and stops at the first chunk end after the store
        failed to open, or at its first write."""
        if self.on_progress is not None:
            self._store()
        else:
            self.lock.check()
        self.keys.work()
        self.last_upper = upper
        self._save(res, self.keys.frontier(upper))
        if self.on_progress is not None:
            self.on_progress(self.pair.name, res.rows, max(estimate, res.rows))
        if estimate:
            metrics.SCAN_PROGRESS.labels(self.pair.name).set(min(1.0, res.rows / estimate))
        if upper is None:
            metrics.SCAN_PROGRESS.labels(self.pair.name).set(1.0)

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # -- progress

    def _save(self, res: PairScanResult, frontier: Frontier | None, final: bool = False) -> None:
        """Record progress. Per chunk this hands the latest state to a background writer (the write overlaps
        the next chunk's queries; a crash loses at most the chunk being written); `final` writes it now."""
        key, rows, chunks = frontier if frontier is not None else (None, None, None)
        state = (pk_string(key) if key is not None else None, res.chunks if chunks is None else chunks,
                 res.rows if rows is None else rows, sum(self.keys.diffs.values()))
        if final:
            self._saver.flush()
            self._write(res.scan_id, state)
        elif self.lock.ready():  # before that nothing is saved: the next state supersedes this one anyway
            self._saver.put(res.scan_id, state)

    def _write(self, scan_id: str, state: tuple[str | None, int, int, int]) -> None:
        last_key, chunks, rows, diffs = state
        self._store().save(scan_id, self.pair.name, last_key=last_key, chunks=chunks, rows=rows, diffs=diffs)
