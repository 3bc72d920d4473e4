"""High availability: the leader is whoever holds a MySQL named lock on the state server.

`GET_LOCK(name, 0)` is taken on a dedicated connection and lives exactly as long as that connection, so a
daemon that dies (even kill -9) releases it the moment the server notices the closed socket. The holder checks
every `retry_s` that `IS_USED_LOCK(name) = CONNECTION_ID()`; any error or a different owner means the lock
is lost and leader-only stages (tailers, scheduler) are stopped at once. Standbys retry every `retry_s`, so a
takeover happens within about `retry_s` after the holder's connection closes. A holder that hangs rather than
dies stops pinging; the session's `wait_timeout` (`leader_idle_timeout`) then closes it on the server side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from cdc_repair import metrics
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement, quote_ident

log = logging.getLogger(__name__)


class Lock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...


class MySQLNamedLock:
    """One named lock on one dedicated connection (not pooled: the lock belongs to the session)."""

    def __init__(self, dsn: Dsn, name: str, connect_timeout_s: float = 5.0, idle_timeout_s: int | None = None) -> None:
        self.dsn = dsn.with_database(None)
        self.state_db = dsn.database  # where the holder's identity is recorded (table `leader`)
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        # The server closes the lock's session after this many idle seconds: a holder that hangs (SIGSTOP, a
        # frozen VM) instead of dying still loses the lock, since its keep-alive queries stop.
        self.idle_timeout_s = idle_timeout_s
        self._conn: Any = None

    def try_acquire(self) -> bool:
        """GET_LOCK(name, 0): never waits, so a standby stays responsive to shutdown."""
        self.close()
        conn = mysql.connect(self.dsn, timeout_s=self.connect_timeout_s)
        try:
            if self.idle_timeout_s:
                mysql.execute(conn, Statement("SET SESSION wait_timeout = %s", (int(self.idle_timeout_s),)))
            row = mysql.fetch_one(conn, Statement("SELECT GET_LOCK(%s, 0)", (self.name,)))
        except BaseException:  # not ours to handle: only the connection is released here
            conn.close()
            raise
        if row is not None and row[0] == 1:
            self._conn = conn
            self._record_holder(conn)
            return True
        conn.close()
        return False

    def _record_holder(self, conn: Any) -> None:
        """Say who holds the lock (host, pid, since) for status pages; the lock works without it."""
        if not self.state_db:
            return
        sql = (f"INSERT INTO {quote_ident(self.state_db)}.`leader` (lock_name, host, pid, connection_id, since) "
               "VALUES (%s, %s, %s, CONNECTION_ID(), UTC_TIMESTAMP()) ON DUPLICATE KEY UPDATE host = VALUES(host), "
               "pid = VALUES(pid), connection_id = VALUES(connection_id), since = VALUES(since)")
        try:
            mysql.execute(conn, Statement(sql, (self.name, socket.gethostname(), os.getpid())))
        except mysql.DriverError as exc:  # e.g. the table is not created yet: status shows the holder unknown
            log.warning("could not record the leader lock holder in %s.leader: %s", self.state_db, exc)

    def still_held(self) -> bool:
        """True while our session still owns the lock; any error counts as lost."""
        if self._conn is None:
            return False
        try:
            row = mysql.fetch_one(self._conn, Statement("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,)))
        except (mysql.DriverError, OSError) as exc:
            log.warning("leader lock check failed: %s", exc)
            return False
        return row is not None and row[0] == 1

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                mysql.fetch_one(self._conn, Statement("SELECT RELEASE_LOCK(%s)", (self.name,)))
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def lock_holder(dsn: Dsn, name: str) -> int | None:
    """The connection id holding `name`, or None when free (for status)."""
    conn = mysql.connect(dsn.with_database(None), timeout_s=5)
    try:
        row = mysql.fetch_one(conn, Statement("SELECT IS_USED_LOCK(%s)", (name,)))
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else None


def lock_holder_info(dsn: Dsn, name: str) -> dict[str, Any]:
    """Who holds `name`: {"connection_id", "host", "pid", "since" (epoch s)}, the identity fields None when
    the holder did not record itself; {"connection_id": None} when the lock is free."""
    conn = mysql.connect(dsn.with_database(None), timeout_s=5)
    try:
        row = mysql.fetch_one(conn, Statement("SELECT IS_USED_LOCK(%s)", (name,)))
        holder = int(row[0]) if row and row[0] is not None else None
        out: dict[str, Any] = {"connection_id": holder, "host": None, "pid": None, "since": None}
        if holder is None or not dsn.database:
            return out
        rec = mysql.fetch_one(conn, Statement(
            f"SELECT host, pid, connection_id, since FROM {quote_ident(dsn.database)}.`leader` WHERE lock_name = %s",
            (name,)))
    finally:
        conn.close()
    if rec is not None and int(rec[2]) == holder:
        since = rec[3]
        out.update(host=str(rec[0]), pid=int(rec[1]),
                   since=since.replace(tzinfo=UTC).timestamp() if isinstance(since, datetime) else None)
    return out


def leader_idle_timeout(retry_s: float) -> int:
    """Seconds without a keep-alive after which the server drops a hung leader's session (and its lock)."""
    return max(10, int(5 * retry_s))


class LeaderElector:
    """A loop (run it in a thread): acquire when free, keep alive while held, report changes through callbacks.

    `on_elected()` and `on_lost()` run in this thread; `on_lost` must stop leader stages promptly. When `run`
    returns (shutdown), the lock is released; the caller stops leader stages *before* that, so a checkpoint
    is saved while this daemon is still the only tailer.
    """

    def __init__(self, lock: Lock, on_elected: Callable[[], None], on_lost: Callable[[], None],
                 retry_s: Callable[[], float]) -> None:
        self.lock = lock
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.retry_s = retry_s
        self.is_leader = False
        self.since: float | None = None
        self.last_error: str | None = None
        metrics.LEADER.set(0)

    def run(self, stop_event: threading.Event) -> None:
        try:
            while not stop_event.is_set():
                self.step()
                stop_event.wait(self.retry_s())
        finally:
            self._release()

    def step(self) -> None:
        """One round: try to acquire (standby) or verify (leader)."""
        if not self.is_leader:
            try:
                acquired = self.lock.try_acquire()
            except Exception as exc:  # state server down: stay standby, retry next round
                self.last_error = str(exc)
                metrics.ERRORS.labels(stage="leader", kind=type(exc).__name__).inc()
                log.warning("cannot try the leader lock: %s", exc)
                return
            if acquired:
                self._became(True)
                log.info("elected leader (holding the leader lock)")
                self.on_elected()
        elif not self.lock.still_held():
            log.error("leader lock lost: stopping leader stages now")
            self._became(False)
            self.lock.release()
            self.on_lost()

    def _became(self, leader: bool) -> None:
        self.is_leader = leader
        self.since = time.time() if leader else None
        metrics.LEADER.set(1 if leader else 0)

    def _release(self) -> None:
        if self.is_leader:
            log.info("releasing the leader lock")
        self._became(False)
        self.lock.release()
