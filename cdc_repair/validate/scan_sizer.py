"""How big the full scan's chunks and buckets are, and which keys a compare names (pure: numbers in, numbers out).

Why a chunk size that moves: a fixed size is either slow on wide rows (long queries hold the server) or slow on
narrow ones (round trips dominate). Like pt-table-checksum, the size follows the measured rate toward a time
target (weighted average, weight 0.75), capped by `max_chunk_rows`. The keyset strategy also caps it from the
difference density: dense differences make big chunks all dirty, and a dirty chunk costs a second pass, so the
cap aims at ~`DIFFS_PER_CHUNK` differing rows per chunk. The bucket strategy needs no such cap (a dirty chunk
re-reads only its dirty buckets), but its bucket width follows the measured key density (~`BUCKET_ROWS` rows
per bucket).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Key = tuple[Any, ...]

LEAF_ROWS = 1000  # dirty ranges at most this big are compared row by row (sync-diff's SplitThreshold)
MIN_DIRTY_CAP = 200
DIFFS_PER_CHUNK = 0.5
BUCKET_ROWS = 32  # rows per checksum bucket (integer keys): what a dirty bucket re-reads
MIN_CHUNK_ROWS = 10
WEIGHT = 0.75


class ChunkSizer:
    """The next chunk's size from the rates and differences seen so far (see the module docstring)."""

    def __init__(self, first: int, target_s: float, max_rows: int, dirty_cap: bool) -> None:
        self.size = first
        self.target_s = target_s
        self.max_rows = max_rows
        self.cap: float | None = float(first) if dirty_cap else None
        self._avg_n = self._avg_t = 0.0
        self._rows = 0
        self._diff_rows = 0

    def timed(self, rows: int, seconds: float) -> int:
        """A source chunk of `rows` took `seconds`: the size of the next one."""
        if rows and seconds > 0:
            self._avg_n = self._avg_n * WEIGHT + rows
            self._avg_t = self._avg_t * WEIGHT + seconds
            limit = min(self._avg_n / self._avg_t * self.target_s, float(self.max_rows))
            if self.cap is not None:
                limit = min(limit, self.cap)
            self.size = int(max(MIN_CHUNK_ROWS, limit))
        return self.size

    def compared(self, rows: int, diff_rows: int, dirty: bool) -> None:
        """A chunk of `rows` was compared and named `diff_rows` differing keys: adjust the dirty cap."""
        self._rows += rows
        self._diff_rows += diff_rows
        if self.cap is None:
            return
        if self._diff_rows:
            density = self._diff_rows / max(1, self._rows)
            self.cap = min(float(self.max_rows), max(MIN_DIRTY_CAP, DIFFS_PER_CHUNK / density))
        elif not dirty:
            self.cap = min(float(self.max_rows), self.cap * 1.5)  # no difference seen yet: grow


def initial_width(lowest: int, highest: int, rows: int) -> int:
    """First bucket width: ~BUCKET_ROWS rows per bucket from the key span and the row estimate."""
    return max(1, round((highest - lowest + 1) / max(1, rows) * BUCKET_ROWS))


def next_width(first_key: int, upper_key: int, rows: int) -> int:
    """Bucket width for the next chunk from this chunk's measured key density."""
    return max(1, round((upper_key - first_key) / rows * BUCKET_ROWS))


def bucket_ranges(dirty: Iterable[int], offset: int, width: int, lower: Key | None,
                  upper: Key | None) -> list[tuple[int, int]]:
    """The inclusive key ranges of the dirty buckets `(key - offset) DIV width`, clipped to (lower, upper]."""
    out = []
    for b in dirty:
        lo, hi = offset + b * width, offset + (b + 1) * width - 1
        if lower is not None:
            lo = max(lo, int(lower[0]) + 1)
        if upper is not None:
            hi = min(hi, int(upper[0]))
        out.append((lo, hi))
    return out


def dirty_buckets(src: Mapping[int, Any], tgt: Mapping[int, Any]) -> list[int]:
    """Buckets whose (COUNT, SUM) differ between the sides, in key order."""
    return sorted(b for b in src.keys() | tgt.keys() if src.get(b) != tgt.get(b))


def differing_keys(left: Mapping[Any, Any], right: Mapping[Any, Any]) -> list[Any]:
    """Keys whose row hash differs: in `left` with another (or no) hash in `right`, then only in `right`."""
    out = [k for k, h in left.items() if right.get(k) != h]
    out += [k for k in right.keys() - left.keys()]
    return out
