"""One chunk's checksums and the drill-down from a dirty chunk to its differing keys, in two strategies.

Why two strategies behind one interface: an integer key lets a chunk statement return one (COUNT, SUM) per
bucket of ~32 keys, so a dirty chunk names its dirty buckets and re-reads only those (`BucketStrategy`);
composite and string keys get one (COUNT, SUM) per chunk and bisect a dirty chunk (`KeysetStrategy`). The chunk
loop (`full_scan`) drives either the same way: `source(lower, size)` reads the next chunk of the source and
its upper key, `target(lower, chunk)` the same key range of the target, `drill(...)` the differing keys.

Both strategies share `Drill`: the bisection (one checksum query per side per level, the other half being the
total minus this half) and the leaf compare (per-row hashes of both sides, merged by key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from cdc_repair.config import PairConfig
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.validate import checksum as cs
from cdc_repair.validate.scan_sides import Buckets, Side, Sides
from cdc_repair.validate.scan_sizer import LEAF_ROWS, bucket_ranges, differing_keys, dirty_buckets, next_width

Key = tuple[Any, ...]
Sum = tuple[int, Decimal]  # (COUNT, SUM of mixed row hashes)
Sums = dict[int, Sum]  # per bucket; the keyset strategy has one "bucket", 0
LEAF_BATCH = 200  # dirty buckets read per statement


@dataclass
class SourceChunk:
    sums: Sums
    rows: int
    upper: Key | None  # None: the source has no rows after this chunk (the last chunk is open-ended)
    seconds: float
    width: int = 0  # the bucket width this chunk was read with


class Strategy(Protocol):
    caps_dirty: bool  # does the chunk size shrink while chunks are dirty (see scan_sizer)?

    def source(self, lower: Key | None, size: int) -> SourceChunk: ...
    def target(self, lower: Key | None, chunk: SourceChunk) -> Sums: ...
    def drill(self, lower: Key | None, chunk: SourceChunk, target: Sums) -> list[Key]: ...


def _sum(row: Sequence[Any] | None) -> Sum:
    return (int(row[0]), Decimal(row[1] or 0)) if row else (0, Decimal(0))


class Drill:
    """Bisection and leaf compares over the sides' drill-down connections; counts what it read."""

    def __init__(self, pair: PairConfig, sides: Sides, where: str | None, pool: ThreadPoolExecutor) -> None:
        self.pair = pair
        self.src, self.tgt = sides.source, sides.target
        self.where = where
        self.pool = pool
        self.bisections = 0
        self.rows_compared = 0  # rows whose per-row hashes were merge-joined

    def fetch(self, side: Side, read: Callable[[], Any]) -> Any:
        """Run `read` (a query on `side`), turning a driver error into the project's error naming the table."""
        try:
            return read()
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{self.pair.name}': scanning {side.table}") from exc

    def both(self, build: Callable[[Side], Statement], one: bool = False) -> tuple[Any, Any]:
        """Run one statement per side, concurrently (two connections, two threads)."""
        def run(side: Side) -> Any:
            stmt = build(side)
            if one:
                return _sum(self.fetch(side, lambda: mysql.fetch_one(side.conn, stmt)))
            return self.fetch(side, lambda: mysql.fetch_all(side.conn, stmt))

        fs = self.pool.submit(run, self.src)
        ft = self.pool.submit(run, self.tgt)
        return fs.result(), ft.result()

    def diff_range(self, lower: Key | None, upper: Key | None, s: Sum, t: Sum) -> list[Key]:
        """Keys whose row hash differs in (lower, upper], given both sides' (count, sum) there."""
        if s == t:
            return []
        n = max(s[0], t[0])
        if n <= LEAF_ROWS:
            return self.leaf(lower, upper)
        side = self.src if s[0] >= t[0] else self.tgt
        stmt = cs.nth_key(side.table, self.pair.key, lower, upper, max(0, n // 2 - 1), self.where)
        row = mysql.fetch_one(side.conn, stmt)
        mid = tuple(row) if row is not None else None
        if mid is None or mid == upper:
            return self.leaf(lower, upper)
        self.bisections += 1
        s1, t1 = self.both(lambda sd: cs.chunk_checksum(sd.table, self.pair.key, sd.hash, lower, mid, self.where),
                           one=True)
        s2 = (s[0] - s1[0], s[1] - s1[1])
        t2 = (t[0] - t1[0], t[1] - t1[1])
        return self.diff_range(lower, mid, s1, t1) + self.diff_range(mid, upper, s2, t2)

    def leaf(self, lower: Key | None, upper: Key | None) -> list[Key]:
        """Per-row hashes of (lower, upper] on both sides, merged by key."""
        rs, rt = self.both(lambda sd: cs.row_hashes(sd.table, self.pair.key, sd.hash, lower, upper, self.where))
        return self._merge(rs, rt)

    def leaf_ranges(self, ranges: list[tuple[int, int]]) -> list[Key]:
        """Keys whose row hash differs within the given inclusive key ranges (dirty buckets), LEAF_BATCH at a time."""
        out: list[Key] = []
        for i in range(0, len(ranges), LEAF_BATCH):
            part = ranges[i:i + LEAF_BATCH]
            out += self._merge(*self.both(lambda sd, part=part: cs.row_hashes_in(  # type: ignore[misc]
                sd.table, self.pair.key[0], sd.hash, part, self.where)))
        self.bisections += len(ranges)
        return out

    def _merge(self, rs: Sequence[Sequence[Any]], rt: Sequence[Sequence[Any]]) -> list[Key]:
        nk = len(self.pair.key)
        if nk == 1:  # the common case, without tuple building per row
            left = {r[0]: r[1] for r in rs}
            right = {r[0]: r[1] for r in rt}
            self.rows_compared += len(left) + len(right)
            return [(k,) for k in differing_keys(left, right)]
        left = {tuple(r[:nk]): r[nk] for r in rs}
        right = {tuple(r[:nk]): r[nk] for r in rt}
        self.rows_compared += len(left) + len(right)
        return differing_keys(left, right)


class KeysetStrategy:
    """Any key: one (COUNT, SUM) per chunk; a dirty chunk is bisected down to leaves."""

    caps_dirty = True

    def __init__(self, drill: Drill) -> None:
        self.d = drill
        self.key = drill.pair.key

    def source(self, lower: Key | None, size: int) -> SourceChunk:
        """The next `size` source rows in one statement (a composite key asks for its upper key separately)."""
        t = time.monotonic()
        side = self.d.src
        row = self.d.fetch(side, lambda: mysql.fetch_one(side.scan, cs.chunk_checksum_limit(
            side.table, self.key, side.hash, lower, size, self.d.where)))
        n, total = _sum(row)
        upper: Key | None = None
        if n >= size and row is not None:
            if len(self.key) == 1:
                upper = (row[2],)
            else:
                stmt = cs.nth_key(side.table, self.key, lower, None, size - 1, self.d.where)
                key_row = self.d.fetch(side, lambda: mysql.fetch_one(side.scan, stmt))
                upper = tuple(key_row) if key_row is not None else None
        return SourceChunk({0: (n, total)}, n, upper, time.monotonic() - t)

    def target(self, lower: Key | None, chunk: SourceChunk) -> Sums:
        side = self.d.tgt
        row = self.d.fetch(side, lambda: mysql.fetch_one(side.scan, cs.chunk_checksum(
            side.table, self.key, side.hash, lower, chunk.upper, self.d.where)))
        return {0: _sum(row)}

    def drill(self, lower: Key | None, chunk: SourceChunk, target: Sums) -> list[Key]:
        return self.d.diff_range(lower, chunk.upper, chunk.sums[0], target[0])


class BucketStrategy:
    """One integer key: one (COUNT, SUM, MAX key) per bucket, so a dirty chunk re-reads only its dirty buckets
    (~BUCKET_ROWS rows each); the width follows the measured key density."""

    caps_dirty = False

    def __init__(self, drill: Drill, buckets: Buckets) -> None:
        self.d = drill
        self.key = drill.pair.key[0]
        self.width = buckets.width
        self.offset = buckets.offset

    def source(self, lower: Key | None, size: int) -> SourceChunk:
        t = time.monotonic()
        side, width = self.d.src, self.width
        rows = self.d.fetch(side, lambda: mysql.fetch_all(side.scan, cs.bucket_checksums_limit(
            side.table, self.key, side.hash, lower, size, width, self.d.where, self.offset)))
        sums = {int(r[0]): (int(r[1]), Decimal(r[2])) for r in rows}
        n = sum(c for c, _ in sums.values())
        upper = (max(int(r[3]) for r in rows),) if n >= size else None
        chunk = SourceChunk(sums, n, upper, time.monotonic() - t, width)
        if upper is not None and n:
            first = int(lower[0]) if lower is not None else min(b * width for b in sums) + self.offset
            self.width = next_width(first, int(upper[0]), n)
        return chunk

    def target(self, lower: Key | None, chunk: SourceChunk) -> Sums:
        side = self.d.tgt
        rows = self.d.fetch(side, lambda: mysql.fetch_all(side.scan, cs.bucket_checksums(
            side.table, self.key, side.hash, lower, chunk.upper, chunk.width, self.d.where, self.offset)))
        return {int(r[0]): (int(r[1]), Decimal(r[2])) for r in rows}

    def drill(self, lower: Key | None, chunk: SourceChunk, target: Sums) -> list[Key]:
        dirty = dirty_buckets(chunk.sums, target)
        keys = self.d.leaf_ranges(bucket_ranges(dirty, self.offset, chunk.width, lower, chunk.upper))
        if keys:
            return keys
        # changed meanwhile, or a key outside its bucket: compare the whole chunk the generic way
        totals_s = (chunk.rows, sum((v[1] for v in chunk.sums.values()), Decimal(0)))
        totals_t = (sum(c for c, _ in target.values()), sum((v[1] for v in target.values()), Decimal(0)))
        return self.d.diff_range(lower, chunk.upper, totals_s, totals_t)


def is_dirty(chunk: SourceChunk, target: Sums) -> bool:
    """Do the sides differ in this chunk? (Missing buckets on one side count as differing.)"""
    return bool(dirty_buckets(chunk.sums, target))


def strategy(drill: Drill, buckets: Buckets | None) -> Strategy:
    return BucketStrategy(drill, buckets) if buckets is not None else KeysetStrategy(drill)
