"""What `/readyz` and `status` say about one capture source: ready, lag, the last error (no I/O).

Ready means the stream is open and Kafka acknowledges what it is sent. It is cleared by every failure (the retry
loop), by a stall (Kafka not acknowledging: `stalled`, called from the producer's wait) and while the session
starts; it is set again when the stream runs and acknowledgements flow. The uncapturable-change guard
(source/uncapturable.py) can hold capture not ready on top of this.
"""

from __future__ import annotations

import threading
import time

from cdc_repair import metrics


class Readiness:
    def __init__(self, source: str) -> None:
        self.ready = threading.Event()
        self.last_error: str | None = None
        self.lag_s: float | None = None
        self._lag_gauge = metrics.BINLOG_LAG_SECONDS.labels(source)

    def lag(self, seconds: float) -> None:
        self.lag_s = seconds
        self._lag_gauge.set(seconds)

    def lag_since(self, epoch_s: float) -> None:
        """Lag of a change written at `epoch_s` (a binlog timestamp) that we just handled."""
        self.lag(max(0.0, time.time() - epoch_s))

    def stalled(self, reason: str) -> None:
        """Kafka is not acknowledging: not ready (so /readyz says 503) until acknowledgements flow again."""
        self.last_error = reason
        self.ready.clear()

    def failed(self, reason: str) -> None:
        self.last_error = reason
        self.ready.clear()

    def acknowledged(self, stopping: bool) -> None:
        """Kafka acknowledged everything sent: ready again after a stall (not while stopping)."""
        if not self.ready.is_set() and not stopping:
            self.ready.set()
