"""A small in-memory history of headline numbers for the status page charts (no Prometheus server needed).

Sampled from the metrics registry (cheap: no database query) every `interval_s`; counters become rates
between consecutive samples. One hour at 1 s is 3,600 points per series: short enough that an inconsistency
open for a few seconds shows, and `found_per_min` (from the confirmed counter) shows one even when it was found
and repaired between two ledger reads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdc_repair import metrics

SERIES = ("lag_s", "rows_per_s", "keys_per_s", "open", "repairs_per_min", "found_per_min")


@dataclass(frozen=True)
class Totals:
    """Registry values at one instant (counters as running totals)."""

    at: float
    lag_s: float | None
    rows: float
    keys: float
    open: float | None  # None while the ledger cannot be read (not 0)
    repairs_applied: float
    found: float = 0.0  # confirmed inconsistencies: a counter, so one open and repaired between samples shows


def _samples() -> Iterable[tuple[str, dict[str, str], float]]:
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, float(sample.value)


def read_totals(now: float | None = None) -> Totals:
    lags: list[float] = []
    rows = keys = open_ = repairs = found = 0.0
    ledger_up = True
    for name, labels, value in _samples():
        if name == "cdc_repair_source_lag_seconds":
            lags.append(value)
        elif name == "cdc_repair_source_rows_total":
            rows += value
        elif name == "cdc_repair_validate_keys_checked_total":
            keys += value
        elif name == "cdc_repair_ledger_open_inconsistencies":
            open_ += value
        elif name == "cdc_repair_repair_actions_total" and labels.get("outcome") == "applied":
            repairs += value
        elif name == "cdc_repair_validate_confirmed_total":
            found += value
        elif name == "cdc_repair_ledger_up" and value == 0:
            ledger_up = False
    return Totals(time.time() if now is None else now, max(lags) if lags else None, rows, keys,
                  open_ if ledger_up else None, repairs, found)


def point(prev: Totals | None, cur: Totals) -> dict[str, float | None]:
    """One chart point: gauges as they are, counters as rates since `prev` (None for the first sample)."""
    dt = (cur.at - prev.at) if prev else 0.0

    def rate(a: float, b: float, per: float = 1.0) -> float | None:
        return max(0.0, (b - a) / dt * per) if prev and dt > 0 else None

    return {"lag_s": cur.lag_s, "open": cur.open,
            "rows_per_s": rate(prev.rows, cur.rows) if prev else None,
            "keys_per_s": rate(prev.keys, cur.keys) if prev else None,
            "repairs_per_min": rate(prev.repairs_applied, cur.repairs_applied, 60.0) if prev else None,
            "found_per_min": rate(prev.found, cur.found, 60.0) if prev else None}


class History:
    def __init__(self, interval_s: float = 1.0, keep: int = 3600) -> None:
        self.interval_s = interval_s
        self._t: deque[float] = deque(maxlen=keep)
        self._series: dict[str, deque[float | None]] = {s: deque(maxlen=keep) for s in SERIES}
        self._prev: Totals | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="web-history", daemon=True)

    def start(self) -> History:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        cur = read_totals()
        p = point(self._prev, cur)
        with self._lock:
            self._t.append(round(cur.at, 3))
            for name in SERIES:
                value = p[name]
                self._series[name].append(None if value is None else round(value, 4))
            self._prev = cur

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"interval_s": self.interval_s, "t": list(self._t),
                    **{name: list(values) for name, values in self._series.items()}}
