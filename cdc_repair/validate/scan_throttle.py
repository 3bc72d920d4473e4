"""Keep a full scan from hurting production: a rows/s cap and a pause while either server is busy.

Why here and not in the chunk loop: the loop decides *what* to read, this decides *when*; `Threads_running` is
read at most once a second (one cached connection per server), so a throttled scan costs the servers nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement

log = logging.getLogger(__name__)

THROTTLE_POLL_S = 0.5
LOAD_CHECK_EVERY_S = 1.0

_load_conns: dict[str, mysql.Connection] = {}
_load_lock = threading.Lock()


class Throttle:
    def __init__(self, settings: Settings, pair: PairConfig, stop: threading.Event | None) -> None:
        self.settings = settings
        self.pair = pair
        self.cfg = settings.validator.full_scan
        self.stop = stop
        self._last_load_check = 0.0

    def wait(self, rows_done: int, started: float) -> float:
        """Sleep as long as the caps ask (rows done since `started`); returns the seconds waited."""
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
