"""Throttling for repairs: a repairs/s cap per pair and a pause while the written server is busy."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class RateLimiter:
    """Token bucket: `acquire(n)` waits until n more repairs fit under `per_s` (None: unlimited)."""

    def __init__(self, per_s: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._next_free = clock()

    def delay_for(self, n: int) -> float:
        """Seconds to wait before n repairs may start (and book them)."""
        if self.per_s is None or n <= 0:
            return 0.0
        now = self._clock()
        start = max(now, self._next_free)
        self._next_free = start + n / self.per_s
        # the first repair of the batch may start at `start`; the batch is paced as a whole
        return max(0.0, start - now)

    def acquire(self, n: int) -> float:
        wait = self.delay_for(n)
        if wait > 0:
            self._sleep(wait)
        return wait


def wait_while_busy(threads_running: Callable[[], int], limit: int, *, max_wait_s: float = 60.0,
                    poll_s: float = 0.5, stop: threading.Event | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> float:
    """Pause while the server's Threads_running is above `limit`; returns seconds paused (≤ max_wait_s)."""
    waited = 0.0
    while threads_running() > limit and waited < max_wait_s:
        if stop is not None and stop.is_set():
            break
        if waited == 0.0:
            log.info("target busy (Threads_running > %d): pausing repairs", limit)
        sleep(poll_s)
        waited += poll_s
    return waited
