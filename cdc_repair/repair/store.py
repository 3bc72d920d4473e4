"""The repairer's state-DB access: ledger claims, closing and failing entries, and the repair log (I/O).

Claims follow DTM's pattern: one guarded `UPDATE … SET status='repairing', claimed_by=<token> WHERE <due>
ORDER BY … LIMIT n`, then `SELECT … WHERE claimed_by=<token>`; two workers can never hold the same entry.
A claim older than `stale_after_s` (a worker died) is due again. Closing and failing are guarded by the
token, so a worker whose claim expired cannot overwrite the newer owner's result. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cdc_repair.config import BackoffConfig
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn, mask
from cdc_repair.db.sql import Statement, placeholders
from cdc_repair.errors import CdcRepairError, UnreachableError
from cdc_repair.state.engine import state_engine
from cdc_repair.state.ledger import LedgerEntry

OPEN, REPAIRING, REPAIRED, RESOLVED, FAILED = "open", "repairing", "repaired", "resolved", "failed"
_ENTRY_COLS = ("id", "pair", "pk", "kind", "columns", "detected_by", "first_seen", "last_seen", "seen_count",
               "status", "attempts", "next_retry_at", "last_error", "source_event", "event_ts", "repair_id")


def new_id(prefix: str) -> str:
    """A sortable unique id: prefix, UTC time to the second, random suffix (≤ 40 chars)."""
    return f"{prefix}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def backoff_s(attempts: int, cfg: BackoffConfig, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter, capped: initial * multiplier^(attempts-1) ± jitter, ≤ max_s."""
    base = min(cfg.max_s, cfg.initial_s * cfg.multiplier ** max(0, attempts - 1))
    r = (rng or random).uniform(-cfg.jitter, cfg.jitter)
    return max(0.0, min(cfg.max_s, base * (1 + r)))


@dataclass(frozen=True, slots=True)
class LogRow:
    """One repair_log row."""

    id: int
    repair_id: str
    run_id: str
    pair: str
    pk: str
    strategy: str
    action: str
    side: str
    status: str
    sql_text: str | None
    error: str | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Filters:
    pairs: tuple[str, ...] = ()
    pks: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def where(self, alias: str = "") -> tuple[str, tuple[Any, ...]]:
        parts: list[str] = []
        params: list[Any] = []
        qualify = f"{alias}." if alias else ""
        for col, values in (("pair", self.pairs), ("pk", self.pks), ("kind", self.kinds)):
            if values:
                parts.append(f"{qualify}`{col}` IN ({placeholders(len(values))})")
                params.extend(values)
        return (" AND ".join(parts) or "1=1"), tuple(params)


class StateStore:
    """Ledger and repair-log operations on the state DB (one connection; the caller serialises use)."""

    def __init__(self, dsn: Dsn, *, create_schema: bool = True) -> None:
        if create_schema:
            _ensure_state_schema(dsn)
        self.dsn = dsn
        self._conn: mysql.Connection | None = None

    @property
    def conn(self) -> mysql.Connection:
        if self._conn is None:
            self._conn = mysql.connect(self.dsn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _run(self, stmt: Statement) -> int:
        try:
            return mysql.execute(self.conn, stmt)
        except Exception as exc:
            self.close()
            raise mysql.classify(exc, "state DB") from exc

    def _dicts(self, stmt: Statement) -> list[dict[str, Any]]:
        try:
            return mysql.fetch_dicts(self.conn, stmt)
        except Exception as exc:
            self.close()
            raise mysql.classify(exc, "state DB") from exc

    # ------------------------------------------------------------ ledger reads and claims

    def entries(self, filters: Filters, statuses: Sequence[str], *, limit: int = 100000) -> list[LedgerEntry]:
        where, params = filters.where()
        sql = (f"SELECT {', '.join(f'`{c}`' for c in _ENTRY_COLS)} FROM inconsistency WHERE {where} "
               f"AND status IN ({placeholders(len(statuses))}) ORDER BY id LIMIT %s")
        return [_entry(r) for r in self._dicts(Statement(sql, (*params, *statuses, limit)))]

    def claim(self, token: str, filters: Filters, *, statuses: Sequence[str] = (OPEN,), due: bool = True,
              limit: int = 100, stale_after_s: float = 300.0, dead_after_s: float = 30.0,
              take_over: Sequence[str] = ()) -> list[LedgerEntry]:
        """Atomically take up to `limit` entries (due ones, plus claims of dead holders) and return them.

        A claim is taken over when its holder is a registered run (`repair_run`) that ended or whose heartbeat is
        older than `dead_after_s`, when its holder is unregistered and the claim is older than `stale_after_s`,
        or when its token is in `take_over` (the caller judged that holder dead, see `repair/runs.py`). A live
        registered run keeps its claims however long it runs."""
        where, params = filters.where()
        due_sql = " AND (next_retry_at IS NULL OR next_retry_at <= UTC_TIMESTAMP())" if due else ""
        named = f"claimed_by IN ({placeholders(len(take_over))}) OR " if take_over else ""
        sql = (f"UPDATE inconsistency SET status = 'repairing', claimed_by = %s, claimed_at = UTC_TIMESTAMP() "
               f"WHERE {where} AND ((status IN ({placeholders(len(statuses))}){due_sql}) "
               f"OR (status = 'repairing' AND ({named}"
               f"claimed_by IN (SELECT token FROM repair_run WHERE status <> 'running' "
               f"OR heartbeat_at < UTC_TIMESTAMP() - INTERVAL %s SECOND) "
               f"OR ((claimed_at IS NULL OR claimed_at < UTC_TIMESTAMP() - INTERVAL %s SECOND) "
               f"AND NOT EXISTS (SELECT 1 FROM repair_run r WHERE r.token = inconsistency.claimed_by))))) "
               f"ORDER BY next_retry_at, id LIMIT %s")
        self._run(Statement(sql, (token, *params, *statuses, *take_over, int(dead_after_s), int(stale_after_s),
                                  limit)))
        return self.claimed(token)

    def claim_one(self, entry_id: int, token: str, *, statuses: Sequence[str] = (OPEN, FAILED),
                  stale_after_s: float = 300.0) -> bool:
        """Claim one entry by id; False when another worker holds it (rowcount 0)."""
        sql = (f"UPDATE inconsistency SET status = 'repairing', claimed_by = %s, claimed_at = UTC_TIMESTAMP() "
               f"WHERE id = %s AND (status IN ({placeholders(len(statuses))}) OR (status = 'repairing' AND "
               f"(claimed_at IS NULL OR claimed_at < UTC_TIMESTAMP() - INTERVAL %s SECOND)))")
        return self._run(Statement(sql, (token, entry_id, *statuses, int(stale_after_s)))) == 1

    def claimed(self, token: str, filters: Filters | None = None) -> list[LedgerEntry]:
        where, params = (filters or Filters()).where()
        sql = (f"SELECT {', '.join(f'`{c}`' for c in _ENTRY_COLS)} FROM inconsistency "
               f"WHERE claimed_by = %s AND status = 'repairing' AND {where} ORDER BY id")
        return [_entry(r) for r in self._dicts(Statement(sql, (token, *params)))]

    # ------------------------------------------------------------ repair runs (heartbeats) and claim holders

    def register_run(self, run_id: str, token: str, kind: str) -> None:
        """Record a run that is about to claim entries (its host and pid, heartbeat now)."""
        self._run(Statement(
            "INSERT INTO repair_run (run_id, token, kind, host, pid, status, started_at, heartbeat_at) "
            "VALUES (%s, %s, %s, %s, %s, 'running', UTC_TIMESTAMP(), UTC_TIMESTAMP())",
            (run_id, token, kind, socket.gethostname()[:255], os.getpid())))

    def beat(self, run_id: str) -> int:
        return self._run(Statement("UPDATE repair_run SET heartbeat_at = UTC_TIMESTAMP() "
                                   "WHERE run_id = %s AND status = 'running'", (run_id,)))

    def end_run(self, run_id: str, status: str) -> None:
        self._run(Statement("UPDATE repair_run SET status = %s, finished_at = UTC_TIMESTAMP() "
                            "WHERE run_id = %s AND status = 'running'", (status, run_id)))

    def mark_taken_over(self, run_ids: Sequence[str], by: str) -> None:
        if run_ids:
            self._run(Statement(f"UPDATE repair_run SET status = 'taken_over', taken_over_by = %s, "
                                f"finished_at = COALESCE(finished_at, UTC_TIMESTAMP()) "
                                f"WHERE run_id IN ({placeholders(len(run_ids))})", (by, *run_ids)))

    def holders(self, filters: Filters, exclude_token: str) -> list[dict[str, Any]]:
        """Who holds `repairing` entries matching `filters`: per token, the count, the oldest claim's age and
        the run's registry row (run_id … heartbeat age; NULL for an unregistered worker)."""
        where, params = filters.where("i")
        sql = (f"SELECT i.claimed_by AS token, COUNT(*) AS entries, "
               f"TIMESTAMPDIFF(SECOND, MIN(i.claimed_at), UTC_TIMESTAMP()) AS claim_age_s, r.run_id, r.kind, "
               f"r.host, r.pid, r.status, r.started_at, "
               f"TIMESTAMPDIFF(SECOND, r.heartbeat_at, UTC_TIMESTAMP()) AS heartbeat_age_s "
               f"FROM inconsistency i LEFT JOIN repair_run r ON r.token = i.claimed_by "
               f"WHERE {where} AND i.status = 'repairing' AND i.claimed_by <> %s "
               f"GROUP BY i.claimed_by, r.run_id, r.kind, r.host, r.pid, r.status, r.started_at, r.heartbeat_at "
               f"ORDER BY i.claimed_by")
        return self._dicts(Statement(sql, (*params, exclude_token)))

    def close_entries(self, token: str, outcomes: Mapping[int, tuple[str, str | None]]) -> int:
        """Set status (repaired/resolved) and repair_id of claimed entries (one statement per 200 entries:
        a CASE has to be short, MariaDB evaluates it arm by arm for every row)."""
        ids = list(outcomes)
        return sum(self._close_chunk(token, {i: outcomes[i] for i in ids[s:s + 200]})
                   for s in range(0, len(ids), 200))

    def _close_chunk(self, token: str, outcomes: Mapping[int, tuple[str, str | None]]) -> int:
        if not outcomes:
            return 0
        ids = list(outcomes)
        status_case = " ".join(["WHEN %s THEN %s"] * len(ids))
        repair_case = " ".join(["WHEN %s THEN %s"] * len(ids))
        params: list[Any] = []
        for i in ids:
            params += [i, outcomes[i][0]]
        for i in ids:
            params += [i, outcomes[i][1]]
        sql = (f"UPDATE inconsistency SET status = CASE id {status_case} END, "
               f"repair_id = COALESCE(CASE id {repair_case} END, repair_id), claimed_by = NULL, claimed_at = NULL, "
               f"next_retry_at = NULL, last_error = NULL, updated_at = UTC_TIMESTAMP() "
               f"WHERE id IN ({placeholders(len(ids))}) AND claimed_by = %s")
        return self._run(Statement(sql, (*params, *ids, token)))

    def fail_entry(self, token: str, entry: LedgerEntry, error: str, *, max_attempts: int, backoff: BackoffConfig,
                   park: bool = False) -> str:
        """Count a failed attempt: back to `open` with next_retry_at, or parked `failed` after max_attempts."""
        attempts = entry.attempts + 1
        if park or attempts >= max_attempts:
            status, delay = FAILED, None
        else:
            status, delay = OPEN, backoff_s(attempts, backoff)
        retry_sql = "NULL" if delay is None else "UTC_TIMESTAMP() + INTERVAL %s MICROSECOND"
        params: list[Any] = [status, attempts, error[:4000]]
        if delay is not None:
            params.append(int(delay * 1e6))
        sql = (f"UPDATE inconsistency SET status = %s, attempts = %s, last_error = %s, next_retry_at = {retry_sql}, "
               f"claimed_by = NULL, claimed_at = NULL, updated_at = UTC_TIMESTAMP() WHERE id = %s AND claimed_by = %s")
        self._run(Statement(sql, (*params, entry.id, token)))
        return status

    def release(self, token: str, ids: Iterable[int], status: str = OPEN) -> int:
        """Give claimed entries back untouched (dry runs, throttled batches, shutdown)."""
        ids = list(ids)
        if not ids:
            return 0
        sql = (f"UPDATE inconsistency SET status = %s, claimed_by = NULL, claimed_at = NULL "
               f"WHERE id IN ({placeholders(len(ids))}) AND claimed_by = %s")
        return self._run(Statement(sql, (status, *ids, token)))

    # ------------------------------------------------------------ repair log

    def log_repairs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """INSERT IGNORE repair_log rows (repair_id is unique: a re-run never doubles a record)."""
        if not rows:
            return
        cols = ("repair_id", "run_id", "pair", "pk", "strategy", "action", "side", "status", "sql_text", "error")
        one = f"({placeholders(len(cols))}, UTC_TIMESTAMP(), UTC_TIMESTAMP())"
        sql = (f"INSERT IGNORE INTO repair_log ({', '.join(cols)}, created_at, updated_at) "
               f"VALUES {', '.join([one] * len(rows))}")
        self._run(Statement(sql, tuple(r.get(c) for r in rows for c in cols)))

    def set_log_status(self, repair_id: str, status: str, error: str | None = None) -> None:
        self._run(Statement("UPDATE repair_log SET status = %s, error = COALESCE(%s, error), "
                            "updated_at = UTC_TIMESTAMP() WHERE repair_id = %s", (status, error, repair_id)))

    def set_log_statuses(self, repair_ids: Sequence[str], status: str, error: str | None = None) -> None:
        """The same status (and error) for many repair_log rows, 500 per statement."""
        ids = list(repair_ids)
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            self._run(Statement(f"UPDATE repair_log SET status = %s, error = COALESCE(%s, error), "
                                f"updated_at = UTC_TIMESTAMP() WHERE repair_id IN ({placeholders(len(part))})",
                                (status, error, *part)))

    def reopen(self, pair: str, pks: Sequence[str], reason: str) -> int:
        """Put closed ledger entries of these keys back to `open` (a rollback brought their difference back);
        entries held or open already are left as they are."""
        keys = list(dict.fromkeys(pks))
        n = 0
        for s in range(0, len(keys), 500):
            part = keys[s:s + 500]
            n += self._run(Statement(
                f"UPDATE inconsistency SET status = 'open', next_retry_at = NULL, claimed_by = NULL, "
                f"claimed_at = NULL, last_error = %s, updated_at = UTC_TIMESTAMP() WHERE pair = %s "
                f"AND pk IN ({placeholders(len(part))}) AND status IN ('repaired', 'resolved')",
                (reason[:4000], pair, *part)))
        return n

    def repairs(self, id_or_run: str, *, with_sql: bool = True) -> list[LogRow]:
        """The repair with this id, or every repair of the run with this id (oldest first). Two indexed
        queries (an OR of the two columns scans the table); `with_sql=False` skips the long sql_text."""
        cols = "id, repair_id, run_id, pair, pk, strategy, action, side, status, error, created_at"
        sql_col = ", sql_text" if with_sql else ", NULL AS sql_text"
        rows = self._dicts(Statement(f"SELECT {cols}{sql_col} FROM repair_log WHERE repair_id = %s", (id_or_run,)))
        rows += self._dicts(Statement(f"SELECT {cols}{sql_col} FROM repair_log WHERE run_id = %s "
                                      f"AND repair_id <> %s ORDER BY id", (id_or_run, id_or_run)))
        rows.sort(key=lambda r: int(r["id"]))
        return [LogRow(**r) for r in rows]

    def logged_ids(self, repair_ids: Sequence[str]) -> set[str]:
        """Which of these repair ids repair_log has (under any run)."""
        out: set[str] = set()
        ids = list(repair_ids)
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            out |= {str(r["repair_id"]) for r in self._dicts(Statement(
                f"SELECT repair_id FROM repair_log WHERE repair_id IN ({placeholders(len(part))})", tuple(part)))}
        return out

    def run_status(self, run_id: str) -> str | None:
        """The registry status of a run (running | finished | failed | taken_over), None when unregistered."""
        rows = self._dicts(Statement("SELECT status FROM repair_run WHERE run_id = %s", (run_id,)))
        return str(rows[0]["status"]) if rows else None


def _ensure_state_schema(dsn: Dsn, attempts: int = 3) -> None:
    """Create the state database and tables (idempotent); a failure is retried twice (a concurrent creator, a
    busy server), then reported in one line with the password masked."""
    for attempt in range(attempts):
        try:
            state_engine(dsn).dispose()
            return
        except CdcRepairError:
            raise
        except Exception as exc:  # the engine's own errors
            if attempt == attempts - 1:
                first = mask(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                raise UnreachableError(f"state DB {dsn.masked()}: {first} (is it running? is state.dsn right?)"
                                       ) from exc
            time.sleep(0.3 * (attempt + 1))


def _entry(r: Mapping[str, Any]) -> LedgerEntry:
    def js(v: Any) -> Any:
        if v is None or not isinstance(v, (str, bytes)):
            return v
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v

    return LedgerEntry(id=int(r["id"]), pair=r["pair"], pk=r["pk"], kind=r["kind"],
                       columns=tuple(js(r["columns"]) or ()), detected_by=r["detected_by"],
                       first_seen=r["first_seen"], last_seen=r["last_seen"], seen_count=int(r["seen_count"]),
                       status=r["status"], attempts=int(r["attempts"]), next_retry_at=r["next_retry_at"],
                       last_error=r["last_error"], source_event=js(r["source_event"]), event_ts=r["event_ts"],
                       repair_id=r["repair_id"])
