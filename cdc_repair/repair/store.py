"""The repairer's state-DB access: ledger claims, closing and failing entries, and the repair log (I/O).

One object the repair stage, the CLI and rollback share, over the one ledger repository on the state engine:
the statements are in `state/claims.py` (claims, DTM's pattern: a guarded claim UPDATE, then a read of the
token's entries; closing and failing guarded by the token) and `state/repair_log.py` (the repair log and the
run registry). Here: the retry policy (`backoff_s`), ids, and one-line errors naming the state DB.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cdc_repair.config import BackoffConfig
from cdc_repair.db.dsn import Dsn
from cdc_repair.model.ledger import LedgerEntry, LedgerStatus
from cdc_repair.model.ledger import LedgerFilter as Filters
from cdc_repair.state import claims
from cdc_repair.state import repair_log as log_table
from cdc_repair.state.engine import StateEngine, state_engine, state_errors

_R = TypeVar("_R")


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


class StateStore:
    """Ledger claims and repair-log operations on the state engine (thread-safe: the engine pools connections)."""

    def __init__(self, dsn: Dsn, *, create_schema: bool = True) -> None:
        self.dsn = dsn
        self.engine: StateEngine = state_engine(dsn, create_schema=create_schema)

    def close(self) -> None:
        self.engine.dispose()

    def _call(self, fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        """`fn(engine, ...)`; a driver error becomes one line naming the state DB (transient or terminal)."""
        with state_errors("state DB"):
            return fn(self.engine, *args, **kwargs)

    # ------------------------------------------------------------ ledger reads and claims

    def entries(self, filters: Filters, statuses: Sequence[str], *, limit: int = 100000) -> list[LedgerEntry]:
        return self._call(claims.entries, filters, statuses, limit=limit)

    def claim(self, token: str, filters: Filters, *, statuses: Sequence[str] = (LedgerStatus.OPEN,),
              due: bool = True, limit: int = 100, stale_after_s: float = 300.0, dead_after_s: float = 30.0,
              take_over: Sequence[str] = ()) -> list[LedgerEntry]:
        """Atomically take up to `limit` entries (due ones, plus claims of dead holders) and return them.

        A claim is taken over when its holder is a registered run (`repair_run`) that ended or whose heartbeat is
        older than `dead_after_s`, when its holder is unregistered and the claim is older than `stale_after_s`,
        or when its token is in `take_over` (the caller judged that holder dead, see `repair/runs.py`). A live
        registered run keeps its claims however long it runs."""
        self._call(claims.claim, token, filters, statuses=statuses, due=due, limit=limit,
                   stale_after_s=stale_after_s, dead_after_s=dead_after_s, take_over=take_over)
        return self.claimed(token)

    def claim_one(self, entry_id: int, token: str, *,
                  statuses: Sequence[str] = (LedgerStatus.OPEN, LedgerStatus.FAILED),
                  stale_after_s: float = 300.0) -> bool:
        """Claim one entry by id; False when another worker holds it (rowcount 0)."""
        return self._call(claims.claim_one, entry_id, token, statuses=statuses, stale_after_s=stale_after_s)

    def claimed(self, token: str, filters: Filters | None = None) -> list[LedgerEntry]:
        return self._call(claims.claimed, token, filters)

    def holders(self, filters: Filters, exclude_token: str) -> list[dict[str, Any]]:
        """Who holds `repairing` entries matching `filters` (see `state/claims.py: holders`)."""
        return self._call(claims.holders, filters, exclude_token)

    def close_entries(self, token: str, outcomes: Mapping[int, tuple[str, str | None]]) -> int:
        """Set status (repaired/resolved) and repair_id of claimed entries."""
        return self._call(claims.close_entries, token, outcomes)

    def fail_entry(self, token: str, entry: LedgerEntry, error: str, *, max_attempts: int, backoff: BackoffConfig,
                   park: bool = False) -> str:
        """Count a failed attempt: back to `open` with next_retry_at, or parked `failed` after max_attempts."""
        attempts = entry.attempts + 1
        if park or attempts >= max_attempts:
            status, delay = LedgerStatus.FAILED, None
        else:
            status, delay = LedgerStatus.OPEN, backoff_s(attempts, backoff)
        self._call(claims.fail_entry, token, entry.id, status=status, attempts=attempts, error=error,
                   retry_in_s=delay)
        return status

    def release(self, token: str, ids: Iterable[int], status: str = LedgerStatus.OPEN) -> int:
        """Give claimed entries back untouched (dry runs, throttled batches, shutdown)."""
        return self._call(claims.release, token, ids, status)

    def reopen(self, pair: str, pks: Sequence[str], reason: str) -> int:
        """Put closed ledger entries of these keys back to `open` (a rollback brought their difference back)."""
        return self._call(claims.reopen, pair, pks, reason)

    # ------------------------------------------------------------ repair runs (heartbeats) and the repair log

    def register_run(self, run_id: str, token: str, kind: str) -> None:
        self._call(log_table.register_run, run_id, token, kind)

    def beat(self, run_id: str) -> int:
        return self._call(log_table.beat, run_id)

    def end_run(self, run_id: str, status: str) -> None:
        self._call(log_table.end_run, run_id, status)

    def mark_taken_over(self, run_ids: Sequence[str], by: str) -> None:
        self._call(log_table.mark_taken_over, run_ids, by)

    def run_status(self, run_id: str) -> str | None:
        return self._call(log_table.run_status, run_id)

    def log_repairs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._call(log_table.log_repairs, rows)

    def set_log_status(self, repair_id: str, status: str, error: str | None = None) -> None:
        self._call(log_table.set_log_statuses, [repair_id], status, error)

    def set_log_statuses(self, repair_ids: Sequence[str], status: str, error: str | None = None) -> None:
        self._call(log_table.set_log_statuses, repair_ids, status, error)

    def repairs(self, id_or_run: str, *, with_sql: bool = True) -> list[LogRow]:
        return [LogRow(**r) for r in self._call(log_table.repairs, id_or_run, with_sql=with_sql)]

    def logged_ids(self, repair_ids: Sequence[str]) -> set[str]:
        return self._call(log_table.logged_ids, repair_ids)
