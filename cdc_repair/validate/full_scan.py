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

Chunking: the first chunk has `full_scan.chunk_rows` rows; then the size follows the measured rate toward
`chunk_time_target_s` (pt-table-checksum's weighted average, weight 0.75), capped by `max_chunk_rows` and by
a dirty-chunk cap that shrinks the size while more than ~20 % of chunks are dirty (dense differences make
big chunks all dirty, and a dirty chunk costs a second pass). A dirty chunk bigger than `LEAF_ROWS` is
bisected (one checksum query per side per level: the other half is the total minus this half); leaves are
compared row by row by their hashes. Throttle: while `Threads_running` on either server exceeds
`max_threads_running`, and to keep under `max_rows_per_s`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.errors import TerminalError, TransientError
from cdc_repair.model.keys import parse_pk, pk_string
from cdc_repair.model.rules import source_spelled
from cdc_repair.model.verdict import MISMATCH_KINDS, Verdict
from cdc_repair.state import scan_progress
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate import checksum as cs
from cdc_repair.validate.check import check
from cdc_repair.validate.confirm import Rechecks, RespelledOnce
from cdc_repair.validate.scan_store import LedgerScanStore, ScanStore

log = logging.getLogger(__name__)

MAX_REPORTED = 100_000  # confirmed verdicts kept for the report; `diffs` counts every one
LEAF_ROWS = 1000  # dirty ranges at most this big are compared row by row (sync-diff's SplitThreshold)
MIN_DIRTY_CAP = 200
DIFFS_PER_CHUNK = 0.5
BUCKET_ROWS = 32  # rows per checksum bucket (integer keys): what a dirty bucket re-reads
WORK_EVERY_S = 0.25  # batch first checks and re-checks of differing rows
THROTTLE_POLL_S = 0.5
LOAD_CHECK_EVERY_S = 1.0

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
    own_engine = engine is None and store is None
    eng = engine if engine is not None or store is not None else state_engine(settings.state.dsn)
    if store is None:
        assert eng is not None
        store = LedgerScanStore(eng)
    report = ScanReport()
    t0 = time.monotonic()
    try:
        for pair in pairs:
            with store.lock(pair.name) as mine:
                if not mine:
                    raise TransientError(f"a full scan of pair '{pair.name}' is already running in another process "
                                         f"(it holds the state server's scan lock); wait for it or stop it")
                report.pairs.append(_PairScan(settings, pair, store, where, on_progress, stop).run(resume))
            if stop is not None and stop.is_set():
                break
    finally:
        if own_engine and eng is not None:
            eng.dispose()
    report.seconds = time.monotonic() - t0
    return report


# ---------------------------------------------------------------- one pair


class _Side:
    """One table of the pair: `scan` runs the pipelined chunk queries, `conn` everything else (drill-down,
    check), so a drill-down never waits for the next chunk's query. `conn` opens on first use: a scan of
    identical tables never needs it (each connection costs a TLS context and a handshake)."""

    def __init__(self, scan: mysql.Connection, table: str, h: cs.HashSpec,
                 opener: Callable[[], mysql.Connection]) -> None:
        self.scan = scan
        self.table = table
        self.hash = h
        self._opener = opener
        self._conn: mysql.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> mysql.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = self._opener()
            return self._conn

    def close(self) -> None:
        for c in (self._conn, self.scan):
            try:
                if c is not None:
                    c.close()
            except Exception:  # already broken: nothing to release
                log.debug("closing a scan connection failed", exc_info=True)


class _PairScan:
    def __init__(self, settings: Settings, pair: PairConfig, store: ScanStore, where: str | None,
                 on_progress: Progress | None, stop: threading.Event | None) -> None:
        self.settings = settings
        self.pair = pair
        self.store = store
        self.where = where
        self.on_progress = on_progress
        self.stop = stop
        self.cfg = settings.validator.full_scan
        self.rechecks = Rechecks(settings.validator.rechecks, settings.validator.recheck_delay_s)
        # (chunk lower key, keys awaiting a verdict, rows and chunks counted before that chunk)
        self.pending_chunks: list[tuple[tuple[Any, ...] | None, set[str], int, int]] = []
        self._before = (0, 0)
        self._last_load_check = 0.0
        self.last_upper: tuple[Any, ...] | None = None
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"scan-{pair.name}")
        self._saver = _LatestWriter(self._write)
        self.queue: list[tuple[Any, ...]] = []
        self.bucket: int | None = None
        self.offset = 0  # buckets are (key - offset) DIV width
        self._last_work = time.monotonic()
        self._respelled = RespelledOnce(pair)

    # -- setup

    def _connect(self, server: str) -> mysql.Connection:
        conn = mysql.connect(self.settings.server_dsn(server))
        mysql.execute(conn, Statement("SET SESSION time_zone = '+00:00'"))
        return conn

    def _types(self, conn: mysql.Connection, table: str) -> dict[str, str]:
        schema, name = table.split(".", 1)
        rows = mysql.fetch_all(conn, cs.column_types(schema, name))
        if not rows:
            raise TerminalError(f"pair '{self.pair.name}': table {table} not found (check pairs[].source/target)")
        return {str(c): str(t) for c, t in rows}

    def _sides(self) -> tuple[_Side, _Side]:
        src = self._connect(self.pair.source.server)
        tgt = self._connect(self.pair.target.server)
        s_types = self._types(src, self.pair.source.table)
        t_types = self._types(tgt, self.pair.target.table)
        # the key's bytes are hashed too: a row moved to another key, or a key spelled otherwise under a
        # case-/pad-insensitive collation ('KEY10' for 'key10'), changes its chunk's checksum
        cols = [*self.pair.key, *cs.projection(self.pair, list(s_types))]
        missing = [c for c in cols if c not in t_types or c not in s_types]
        if missing:
            raise TerminalError(f"pair '{self.pair.name}': column(s) {', '.join(missing)} missing in "
                                f"{self.pair.source.table} or {self.pair.target.table} (fix the pair's columns)")
        # A column long on either side is pre-hashed the same way on both, so equal values hash equal.
        types = {c: (s_types[c] if s_types[c].lower() in cs.LONG_TYPES else t_types[c]) for c in cols}
        marker = cs.rule_marker(self.pair)
        crc = _has_crc32c(src) and _has_crc32c(tgt)
        self.bucket = self._bucket_width(src, tgt, s_types, t_types)
        s_hash = cs.row_hash(cols, types, marker, crc32c=crc)
        t_hash = cs.row_hash(cols, types, cs.HashSpec("''") if marker else None, crc32c=crc)
        return (_Side(src, self.pair.source.table, s_hash, lambda: self._connect(self.pair.source.server)),
                _Side(tgt, self.pair.target.table, t_hash, lambda: self._connect(self.pair.target.server)))

    def _bucket_width(self, src: mysql.Connection, tgt: mysql.Connection, s_types: dict[str, str],
                      t_types: dict[str, str]) -> int | None:
        """Bucketed checksums need one integer key column; the first width aims at BUCKET_ROWS rows per bucket
        from the key span and the row estimate (later widths follow the measured density). Buckets count from
        the lowest key of either side (`self.offset`, when negative), so one online row below the source's range
        (id -5) neither breaks buckets nor moves the chunk boundaries."""
        if len(self.pair.key) != 1:
            return None
        key = self.pair.key[0]
        if s_types.get(key, "").lower() not in _INT_TYPES or t_types.get(key, "").lower() not in _INT_TYPES:
            return None
        spans = []
        for conn, table in ((src, self.pair.source.table), (tgt, self.pair.target.table)):
            row = mysql.fetch_one(conn, cs.min_key(table, key))
            if row is None or row[0] is None:
                continue
            spans.append((int(row[0]), int(row[1])))
        if not spans:
            return BUCKET_ROWS
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        if hi - lo >= 2**62:  # (key - offset) must stay a BIGINT
            return None
        self.offset = min(0, lo)
        schema, name = self.pair.source.table.split(".", 1)
        est = mysql.fetch_one(src, cs.estimated_rows(schema, name))
        rows = max(1, int(est[0] or 1) if est else 1)
        return max(1, round((hi - lo + 1) / rows * BUCKET_ROWS))

    # -- main loop

    def run(self, resume: bool) -> PairScanResult:
        state = self.store.resumable(self.pair.name) if resume else None
        scan_id = state.scan_id if state else uuid.uuid4().hex[:16]
        res = PairScanResult(self.pair.name, scan_id, resumed=state is not None)
        where = state.where_clause if state else self.where
        self.where = where
        lower: tuple[Any, ...] | None = None
        if state is not None:
            res.rows, res.chunks = state.rows, state.chunks
            lower = parse_pk(state.last_key) if state.last_key else None
            log.info("resuming full scan %s of pair %s after key %s (%d chunks done)", scan_id, self.pair.name,
                     state.last_key, state.chunks)
        else:
            self.store.start(scan_id, self.pair.name, where)
        src, tgt = self._sides()
        t0 = time.monotonic()
        estimate = self._estimate(src, tgt)
        self.store.set_total(scan_id, self.pair.name, estimate or None)  # status: rows done of total
        try:
            if self.bucket is not None:
                self._loop_buckets(res, src, tgt, lower, estimate)
            else:
                self._loop(res, src, tgt, lower, estimate)
            self._drain(res, src, tgt)
            res.interrupted = self.stop is not None and self.stop.is_set()
            self._save(res, None if not res.interrupted else self._frontier(self.last_upper), final=True)
        except BaseException:
            self.store.finish(scan_id, self.pair.name, scan_progress.FAILED)
            raise
        finally:
            res.seconds = time.monotonic() - t0
            self._saver.close()
            self.pool.shutdown(wait=True)
            src.close()
            tgt.close()
        if res.resumed:
            self._whole_scan(res)
        self.store.finish(scan_id, self.pair.name, scan_progress.FAILED if res.interrupted else scan_progress.DONE)
        metrics.SCAN_ROWS_PER_SECOND.labels(self.pair.name).set(res.rows_per_s)
        return res

    def _whole_scan(self, res: PairScanResult) -> None:
        """A resumed scan reports every difference of the whole scan: also those confirmed before the
        interruption (from `scan_finding`), as long as their ledger entry is still active."""
        diffs, items = self.store.findings(res.scan_id, self.pair.name, MAX_REPORTED)
        res.diffs = diffs
        res.confirmed = [Verdict(self.pair.name, parse_pk(f.pk), f.kind, f.columns) for f in items]

    def _estimate(self, src: _Side, tgt: _Side) -> int:
        est = 0
        for side in (src, tgt):
            schema, name = side.table.split(".", 1)
            row = mysql.fetch_one(side.scan, cs.estimated_rows(schema, name))
            est = max(est, int(row[0] or 0) if row else 0)
        return est

    def _loop(self, res: PairScanResult, src: _Side, tgt: _Side, lower: tuple[Any, ...] | None,
              estimate: int) -> None:
        """Pipelined: while the target checksums chunk i, the source already reads chunk i+1 (one statement
        per chunk per side: the source's also yields the chunk's upper key)."""
        size = self.cfg.chunk_rows
        dirty_cap = float(self.cfg.chunk_rows)
        avg_n = avg_t = 0.0
        diff_rows = 0
        started = time.monotonic()
        rows_at_start = res.rows
        self.last_upper = lower
        if self._stopped():
            return
        fut: Any = self.pool.submit(self._src_chunk, src, lower, size)
        while fut is not None:
            ns, ss, upper, elapsed = fut.result()
            fut_t = self.pool.submit(self._tgt_chunk, tgt, lower, upper)
            if ns and elapsed > 0:
                avg_n, avg_t = avg_n * 0.75 + ns, avg_t * 0.75 + elapsed
                by_time = avg_n / avg_t * self.cfg.chunk_time_target_s
                size = int(max(10, min(by_time, dirty_cap, self.cfg.max_chunk_rows)))
            fut = None
            if upper is not None and not self._stopped():
                res.throttled_s += self._throttle(res.rows - rows_at_start, started)
                fut = self.pool.submit(self._src_chunk, src, upper, size)
            nt, st = fut_t.result()
            n = max(ns, nt)
            self._before = (res.rows, res.chunks)
            res.chunks += 1
            res.rows += n
            metrics.SCAN_ROWS.labels(self.pair.name, "full").inc(n)
            dirty = ns != nt or ss != st
            metrics.SCAN_CHUNKS.labels(self.pair.name, "dirty" if dirty else "clean").inc()
            if dirty:
                res.dirty_chunks += 1
                keys = self._diff_range(res, src, tgt, lower, upper, (ns, ss), (nt, st))
                self._check_keys(res, src, tgt, keys, lower)
                diff_rows += len(keys)
            if diff_rows:
                # about DIFFS_PER_CHUNK expected differing rows per chunk: most chunks stay clean (one pass)
                density = diff_rows / max(1, res.rows - rows_at_start)
                dirty_cap = min(float(self.cfg.max_chunk_rows), max(MIN_DIRTY_CAP, DIFFS_PER_CHUNK / density))
            elif not dirty:
                dirty_cap = min(float(self.cfg.max_chunk_rows), dirty_cap * 1.5)  # no difference seen yet: grow
            self._finish_chunk(res, src, tgt, upper, estimate)
            if fut is not None and self._stopped():
                fut.result()  # let the in-flight read finish; its chunk is not counted
                fut = None
            lower = upper

    def _finish_chunk(self, res: PairScanResult, src: _Side, tgt: _Side, upper: tuple[Any, ...] | None,
                      estimate: int) -> None:
        """After a chunk (either loop): background work, the resume frontier, progress and its metric."""
        self._work(res, src, tgt)
        self.last_upper = upper
        self._save(res, self._frontier(upper))
        if self.on_progress is not None:
            self.on_progress(self.pair.name, res.rows, max(estimate, res.rows))
        if estimate:
            metrics.SCAN_PROGRESS.labels(self.pair.name).set(min(1.0, res.rows / estimate))
        if upper is None:
            metrics.SCAN_PROGRESS.labels(self.pair.name).set(1.0)

    def _loop_buckets(self, res: PairScanResult, src: _Side, tgt: _Side, lower: tuple[Any, ...] | None,
                      estimate: int) -> None:
        """`_loop` for an integer key: each chunk statement returns one (COUNT, SUM) per bucket of
        `key DIV width` keys, so a dirty chunk only re-reads its dirty buckets (~BUCKET_ROWS rows each) and
        chunks can follow the time target whatever the difference density."""
        size = self.cfg.chunk_rows
        width = self.bucket or BUCKET_ROWS
        avg_n = avg_t = 0.0
        started = time.monotonic()
        rows_at_start = res.rows
        self.last_upper = lower
        if self._stopped():
            return
        fut: Any = self.pool.submit(self._src_buckets, src, lower, size, width)
        while fut is not None:
            b_src, ns, upper, elapsed, used = fut.result()
            fut_t = self.pool.submit(self._tgt_buckets, tgt, lower, upper, used)
            if ns and elapsed > 0:
                avg_n, avg_t = avg_n * 0.75 + ns, avg_t * 0.75 + elapsed
                size = int(max(10, min(avg_n / avg_t * self.cfg.chunk_time_target_s, self.cfg.max_chunk_rows)))
            if upper is not None and ns:
                first = int(lower[0]) if lower is not None else min(b * used for b in b_src) + self.offset
                width = max(1, round((int(upper[0]) - first) / ns * BUCKET_ROWS))
            fut = None
            if upper is not None and not self._stopped():
                res.throttled_s += self._throttle(res.rows - rows_at_start, started)
                fut = self.pool.submit(self._src_buckets, src, upper, size, width)
            b_tgt, nt = fut_t.result()
            n = max(ns, nt)
            self._before = (res.rows, res.chunks)
            res.chunks += 1
            res.rows += n
            metrics.SCAN_ROWS.labels(self.pair.name, "full").inc(n)
            dirty = sorted(b for b in b_src.keys() | b_tgt.keys() if b_src.get(b) != b_tgt.get(b))
            metrics.SCAN_CHUNKS.labels(self.pair.name, "dirty" if dirty else "clean").inc()
            if dirty:
                res.dirty_chunks += 1
                ranges = []
                for b in dirty:
                    lo, hi = self.offset + b * used, self.offset + (b + 1) * used - 1
                    if lower is not None:
                        lo = max(lo, int(lower[0]) + 1)
                    if upper is not None:
                        hi = min(hi, int(upper[0]))
                    ranges.append((lo, hi))
                keys = self._leaf_ranges(res, src, tgt, ranges)
                if not keys:  # changed meanwhile, or a key outside its bucket: compare the whole chunk
                    totals_s = (ns, sum((v[1] for v in b_src.values()), Decimal(0)))
                    totals_t = (nt, sum((v[1] for v in b_tgt.values()), Decimal(0)))
                    keys = self._diff_range(res, src, tgt, lower, upper, totals_s, totals_t)
                self._check_keys(res, src, tgt, keys, lower)
            self._finish_chunk(res, src, tgt, upper, estimate)
            if fut is not None and self._stopped():
                fut.result()
                fut = None
            lower = upper

    def _src_buckets(self, side: _Side, lower: tuple[Any, ...] | None, size: int, width: int
                     ) -> tuple[dict[int, tuple[int, Decimal]], int, tuple[Any, ...] | None, float, int]:
        t = time.monotonic()
        try:
            rows = mysql.fetch_all(side.scan, cs.bucket_checksums_limit(side.table, self.pair.key[0], side.hash,
                                                                        lower, size, width, self.where,
                                                                        self.offset))
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc
        buckets = {int(r[0]): (int(r[1]), Decimal(r[2])) for r in rows}
        n = sum(c for c, _ in buckets.values())
        upper = (max(int(r[3]) for r in rows),) if n >= size else None
        return buckets, n, upper, time.monotonic() - t, width

    def _tgt_buckets(self, side: _Side, lower: tuple[Any, ...] | None, upper: tuple[Any, ...] | None,
                     width: int) -> tuple[dict[int, tuple[int, Decimal]], int]:
        try:
            rows = mysql.fetch_all(side.scan, cs.bucket_checksums(side.table, self.pair.key[0], side.hash, lower,
                                                                  upper, width, self.where, self.offset))
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc
        buckets = {int(r[0]): (int(r[1]), Decimal(r[2])) for r in rows}
        return buckets, sum(c for c, _ in buckets.values())

    def _leaf_ranges(self, res: PairScanResult, src: _Side, tgt: _Side,
                     ranges: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
        """Keys whose row hash differs within the given inclusive key ranges (dirty buckets), 200 at a time."""
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(ranges), 200):
            part = ranges[i:i + 200]
            rs, rt = self._both(src, tgt, lambda sd, part=part: cs.row_hashes_in(  # type: ignore[misc]
                sd.table, self.pair.key[0], sd.hash, part, self.where))
            left = {r[0]: r[1] for r in rs}
            right = {r[0]: r[1] for r in rt}
            res.rows_compared += len(left) + len(right)
            out += [(k,) for k, h in left.items() if right.get(k) != h]
            out += [(k,) for k in right.keys() - left.keys()]
        res.bisections += len(ranges)
        return out

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _src_chunk(self, side: _Side, lower: tuple[Any, ...] | None,
                   size: int) -> tuple[int, Decimal, tuple[Any, ...] | None, float]:
        """(count, sum, upper key or None when the source has no more rows after this chunk, seconds)."""
        t = time.monotonic()
        try:
            row = mysql.fetch_one(side.scan, cs.chunk_checksum_limit(side.table, self.pair.key, side.hash, lower,
                                                                     size, self.where))
            n = int(row[0]) if row else 0
            total = Decimal(row[1] or 0) if row else Decimal(0)
            upper: tuple[Any, ...] | None = None
            if n >= size and row is not None:
                if len(self.pair.key) == 1:
                    upper = (row[2],)
                else:
                    key_row = mysql.fetch_one(side.scan, cs.nth_key(side.table, self.pair.key, lower, None,
                                                                    size - 1, self.where))
                    upper = tuple(key_row) if key_row is not None else None
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc
        return n, total, upper, time.monotonic() - t

    def _tgt_chunk(self, side: _Side, lower: tuple[Any, ...] | None,
                   upper: tuple[Any, ...] | None) -> tuple[int, Decimal]:
        try:
            row = mysql.fetch_one(side.scan, cs.chunk_checksum(side.table, self.pair.key, side.hash, lower, upper,
                                                               self.where))
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc
        return (int(row[0]), Decimal(row[1] or 0)) if row else (0, Decimal(0))

    def _both(self, src: _Side, tgt: _Side, build: Callable[[_Side], Statement],
              one: bool = False) -> tuple[Any, Any]:
        """Run one statement per side, concurrently (two connections, two threads)."""
        def run(side: _Side) -> Any:
            stmt = build(side)
            try:
                if one:
                    row = mysql.fetch_one(side.conn, stmt)
                    return (int(row[0]), Decimal(row[1] or 0)) if row else (0, Decimal(0))
                return mysql.fetch_all(side.conn, stmt)
            except Exception as exc:
                raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc

        fs = self.pool.submit(run, src)
        ft = self.pool.submit(run, tgt)
        return fs.result(), ft.result()

    def _checksums(self, src: _Side, tgt: _Side, lower: tuple[Any, ...] | None,
                   upper: tuple[Any, ...] | None) -> tuple[tuple[int, Decimal], tuple[int, Decimal]]:
        """(COUNT, SUM of row hashes) of (lower, upper] on both sides."""
        return self._both(src, tgt, lambda sd: cs.chunk_checksum(sd.table, self.pair.key, sd.hash, lower, upper,
                                                                  self.where), one=True)

    # -- drilling down

    def _diff_range(self, res: PairScanResult, src: _Side, tgt: _Side, lower: tuple[Any, ...] | None,
                    upper: tuple[Any, ...] | None, s: tuple[int, Decimal], t: tuple[int, Decimal]
                    ) -> list[tuple[Any, ...]]:
        """Keys whose row hash differs in (lower, upper], given both sides' (count, sum) there."""
        if s == t:
            return []
        n = max(s[0], t[0])
        if n <= LEAF_ROWS:
            return self._leaf(res, src, tgt, lower, upper)
        side = src if s[0] >= t[0] else tgt
        row = mysql.fetch_one(side.conn, cs.nth_key(side.table, self.pair.key, lower, upper,
                                                     max(0, (max(s[0], t[0]) // 2) - 1), self.where))
        mid = tuple(row) if row is not None else None
        if mid is None or mid == upper:
            return self._leaf(res, src, tgt, lower, upper)
        res.bisections += 1
        s1, t1 = self._checksums(src, tgt, lower, mid)
        s2 = (s[0] - s1[0], s[1] - s1[1])
        t2 = (t[0] - t1[0], t[1] - t1[1])
        return (self._diff_range(res, src, tgt, lower, mid, s1, t1)
                + self._diff_range(res, src, tgt, mid, upper, s2, t2))

    def _leaf(self, res: PairScanResult, src: _Side, tgt: _Side, lower: tuple[Any, ...] | None,
              upper: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        rs, rt = self._both(src, tgt, lambda sd: cs.row_hashes(sd.table, self.pair.key, sd.hash, lower, upper,
                                                               self.where))
        nk = len(self.pair.key)
        if nk == 1:  # the common case, without tuple building per row
            left = {r[0]: r[1] for r in rs}
            right = {r[0]: r[1] for r in rt}
            res.rows_compared += len(left) + len(right)
            out = [(k,) for k, h in left.items() if right.get(k) != h]
            out += [(k,) for k in right.keys() - left.keys()]
        else:
            left = {tuple(r[:nk]): r[nk] for r in rs}
            right = {tuple(r[:nk]): r[nk] for r in rt}
            res.rows_compared += len(left) + len(right)
            out = [k for k, h in left.items() if right.get(k) != h]
            out += [k for k in right.keys() - left.keys()]
        return out

    # -- checking and confirming

    def _check_keys(self, res: PairScanResult, src: _Side, tgt: _Side, keys: Sequence[tuple[Any, ...]],
                    chunk_lower: tuple[Any, ...] | None) -> None:
        """Queue a dirty chunk's differing keys; they are checked in batches (see `_work`)."""
        if not keys:
            return
        self.pending_chunks.append((chunk_lower, {pk_string(k) for k in keys}, *self._before))
        self.queue.extend(keys)
        if len(self.queue) >= self.settings.validator.batch_max_keys:
            self._flush_queue(res, src, tgt)

    def _flush_queue(self, res: PairScanResult, src: _Side, tgt: _Side) -> None:
        keys, self.queue = self.queue, []
        self._last_work = time.monotonic()
        if not keys:
            return
        verdicts = self._check(res, src, tgt, keys)
        confirmed = self.rechecks.add(verdicts, time.monotonic())
        self._record(res, [v for v in verdicts if not v.is_mismatch] + confirmed)
        self._prune_pending()

    def _work(self, res: PairScanResult, src: _Side, tgt: _Side, force: bool = False) -> None:
        """First checks and due re-checks, batched: at most every WORK_EVERY_S (always when `force`)."""
        if not force and time.monotonic() - self._last_work < WORK_EVERY_S:
            return
        self._flush_queue(res, src, tgt)
        self._recheck_due(res, src, tgt)

    def _prune_pending(self) -> None:
        queued = {pk_string(k) for k in self.queue}
        self.pending_chunks = [(lo, {pk for pk in pks if pk in queued or self.rechecks.pending(self.pair.name, pk)},
                                rows, chunks) for lo, pks, rows, chunks in self.pending_chunks]
        self.pending_chunks = [entry for entry in self.pending_chunks if entry[1]]

    def _check(self, res: PairScanResult, src: _Side, tgt: _Side, keys: Sequence[tuple[Any, ...]]) -> list[Verdict]:
        verdicts = check(self.pair, keys, src.conn, tgt.conn, batch_size=self.settings.validator.batch_max_keys)
        res.rows_checked += len(verdicts)
        metrics.KEYS_CHECKED.labels(self.pair.name, "full_scan").inc(len(verdicts))
        for v in verdicts:
            metrics.VERDICTS.labels(self.pair.name, v.kind).inc()
        return verdicts

    def _recheck_due(self, res: PairScanResult, src: _Side, tgt: _Side) -> None:
        due = self.rechecks.due(time.monotonic()).get(self.pair.name)
        if not due:
            return
        verdicts = self._check(res, src, tgt, due)
        confirmed = self.rechecks.feed(verdicts, time.monotonic())
        self._record(res, [v for v in verdicts if not v.is_mismatch] + confirmed)
        self._prune_pending()

    def _drain(self, res: PairScanResult, src: _Side, tgt: _Side) -> None:
        self._flush_queue(res, src, tgt)
        while len(self.rechecks):
            nxt = self.rechecks.next_due()
            if nxt is not None:
                time.sleep(max(0.0, nxt - time.monotonic()))
            self._recheck_due(res, src, tgt)

    def _record(self, res: PairScanResult, verdicts: list[Verdict]) -> None:
        if not verdicts:
            return
        verdicts = self._respelled.once([source_spelled(self.pair, v) for v in verdicts])
        self.store.record(res.scan_id, self.pair.name, verdicts, [v.pk for v in verdicts if v.kind in MISMATCH_KINDS])
        for v in verdicts:
            if v.kind in MISMATCH_KINDS:
                res.diffs[v.kind] = res.diffs.get(v.kind, 0) + 1
                if len(res.confirmed) < MAX_REPORTED:  # keep memory flat: no row images, bounded list
                    res.confirmed.append(replace(v, source=None, target=None))
                metrics.CONFIRMED.labels(self.pair.name, v.kind).inc()

    # -- progress and load

    def _frontier(self, upper: tuple[Any, ...] | None) -> tuple[tuple[Any, ...] | None, int | None, int | None]:
        """Resume point (key, rows, chunks counted up to it): before the first chunk that still has keys
        awaiting a verdict (so a crash never loses a difference found but not yet confirmed), else `upper`."""
        if self.pending_chunks:
            lower, _pks, rows, chunks = self.pending_chunks[0]
            return lower, rows, chunks
        return upper, None, None

    def _save(self, res: PairScanResult, frontier: tuple[tuple[Any, ...] | None, int | None, int | None] | None,
              final: bool = False) -> None:
        """Record progress. Per chunk this hands the latest state to a background writer (the write overlaps
        the next chunk's queries; a crash loses at most the chunk being written); `final` writes it now."""
        key, rows, chunks = frontier if frontier is not None else (None, None, None)
        state = (pk_string(key) if key is not None else None, res.chunks if chunks is None else chunks,
                 res.rows if rows is None else rows, res.differences)
        if final:
            self._saver.flush()
            self._write(res.scan_id, state)
        else:
            self._saver.put(res.scan_id, state)

    def _write(self, scan_id: str, state: tuple[str | None, int, int, int]) -> None:
        last_key, chunks, rows, diffs = state
        self.store.save(scan_id, self.pair.name, last_key=last_key, chunks=chunks, rows=rows,
                           diffs=diffs)

    def _throttle(self, rows_done: int, started: float) -> float:
        waited = 0.0
        cap = self.cfg.max_rows_per_s
        if cap:
            ahead = rows_done / cap - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
                waited += ahead
        now = time.monotonic()
        if now - self._last_load_check < LOAD_CHECK_EVERY_S:
            return waited
        self._last_load_check = now
        while self._busy() and not (self.stop is not None and self.stop.is_set()):
            time.sleep(THROTTLE_POLL_S)
            waited += THROTTLE_POLL_S
            metrics.SCAN_THROTTLED.labels(self.pair.name).inc(THROTTLE_POLL_S)
        return waited

    def _busy(self) -> bool:
        for server in {self.pair.source.server, self.pair.target.server}:
            if threads_running(self.settings, server) > self.cfg.max_threads_running:
                log.info("full scan of %s paused: Threads_running above %d on server %s", self.pair.name,
                         self.cfg.max_threads_running, server)
                return True
        return False


class _LatestWriter:
    """A background thread writing the latest (scan_id, state) handed to it; older pending states are skipped."""

    def __init__(self, write: Callable[[str, Any], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: tuple[str, Any] | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scan-progress", daemon=True)
        self._thread.start()

    def put(self, scan_id: str, state: Any) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._pending = (scan_id, state)
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            while (self._pending is not None or self._busy) and self._error is None and self._thread.is_alive():
                self._cond.wait(0.1)
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                item, self._pending = self._pending, None
                self._busy = True
            try:
                self._write(*item)
            except BaseException as exc:  # surfaced to the scan on its next put/flush
                log.exception("saving full-scan progress failed")
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _has_crc32c(conn: mysql.Connection) -> bool:
    """CRC32C() exists on MariaDB ≥ 10.8 (not on MySQL): then long columns are pre-hashed by CRC, not MD5."""
    try:
        mysql.fetch_one(conn, Statement("SELECT CRC32C('a')"))
        return True
    except Exception:
        return False


_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
_load_conns: dict[str, mysql.Connection] = {}
_load_lock = threading.Lock()


def threads_running(settings: Settings, server: str) -> int:
    """Threads_running of a server (one cached connection per server; reconnects when lost)."""
    with _load_lock:
        conn = _load_conns.get(server)
        try:
            if conn is None:
                conn = _load_conns[server] = mysql.connect(settings.server_dsn(server))
            row = mysql.fetch_one(conn, Statement("SHOW GLOBAL STATUS LIKE 'Threads_running'"))
        except Exception:
            _load_conns.pop(server, None)
            return 0
    return int(row[1]) if row else 0
