"""Ledger claims (state table `inconsistency`): the repairer's side of the one ledger repository.

Claims follow DTM's pattern: one guarded `UPDATE … SET status='repairing', claimed_by=<token> WHERE <due>
ORDER BY … LIMIT n`, then `SELECT … WHERE claimed_by=<token>`; two workers can never hold the same entry.
A claim older than `stale_after_s` (a worker died) is due again. Closing and failing are guarded by the
token, so a worker whose claim expired cannot overwrite the newer owner's result. The statements whose
shape Core cannot say (UPDATE … ORDER BY … LIMIT, a CASE per id) are SQL text with bound parameters; entries
are read with Core and mapped by `state/ledger.py: entry_from_row`, the ledger's one row mapper.
Times are the database's UTC clock (`UTC_TIMESTAMP()`), so workers on several hosts agree.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, TextClause, and_, bindparam, select, text, true

from cdc_repair.model.ledger import CLOSED_STATUSES, LedgerEntry, LedgerFilter, LedgerStatus
from cdc_repair.state.ledger import entry_from_row
from cdc_repair.state.tables import inconsistency

_T = inconsistency
_REPAIRING = LedgerStatus.REPAIRING.value


def _filter_clause(filters: LedgerFilter) -> ColumnElement[bool]:
    parts = [col.in_(values) for col, values in ((_T.c.pair, filters.pairs), (_T.c.pk, filters.pks),
                                                   (_T.c.kind, filters.kinds)) if values]
    return and_(true(), *parts)


def filter_sql(filters: LedgerFilter, alias: str = "") -> tuple[str, dict[str, list[str]]]:
    """The filter as SQL text (`<col> IN :f_<col>`, expanding parameters) for the text statements."""
    qualify = f"{alias}." if alias else ""
    parts, params = [], {}
    for col, values in (("pair", filters.pairs), ("pk", filters.pks), ("kind", filters.kinds)):
        if values:
            parts.append(f"{qualify}`{col}` IN :f_{col}")
            params[f"f_{col}"] = list(values)
    return (" AND ".join(parts) or "1=1"), params


def _statement(sql: str, params: Mapping[str, Any]) -> TextClause:
    return text(sql).bindparams(*(bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)))


def _execute(engine: Engine, sql: str, params: Mapping[str, Any]) -> int:
    with engine.begin() as conn:
        return int(conn.execute(_statement(sql, params), dict(params)).rowcount)


def entries(engine: Engine, filters: LedgerFilter, statuses: Sequence[str], *, limit: int = 100000
            ) -> list[LedgerEntry]:
    q = (select(_T).where(_filter_clause(filters), _T.c.status.in_(list(statuses))).order_by(_T.c.id)
         .limit(limit))
    with engine.connect() as conn:
        return [entry_from_row(r) for r in conn.execute(q)]


def claimed(engine: Engine, token: str, filters: LedgerFilter | None = None) -> list[LedgerEntry]:
    q = (select(_T).where(_T.c.claimed_by == token, _T.c.status == _REPAIRING,
                          _filter_clause(filters or LedgerFilter())).order_by(_T.c.id))
    with engine.connect() as conn:
        return [entry_from_row(r) for r in conn.execute(q)]


def claim(engine: Engine, token: str, filters: LedgerFilter, *, statuses: Sequence[str], due: bool, limit: int,
          stale_after_s: float, dead_after_s: float, take_over: Sequence[str]) -> int:
    """Take up to `limit` entries: due ones in `statuses`, and `repairing` ones whose holder is dead (a registered
    run that ended or stopped beating for `dead_after_s`, an unregistered claim older than `stale_after_s`, or a
    token in `take_over`). Returns how many were taken."""
    where, params = filter_sql(filters)
    due_sql = " AND (next_retry_at IS NULL OR next_retry_at <= UTC_TIMESTAMP())" if due else ""
    named = "claimed_by IN :take_over OR " if take_over else ""
    sql = (f"UPDATE inconsistency SET status = 'repairing', claimed_by = :token, claimed_at = UTC_TIMESTAMP() "
           f"WHERE {where} AND ((status IN :statuses{due_sql}) "
           f"OR (status = 'repairing' AND ({named}"
           f"claimed_by IN (SELECT token FROM repair_run WHERE status <> 'running' "
           f"OR heartbeat_at < UTC_TIMESTAMP() - INTERVAL :dead SECOND) "
           f"OR ((claimed_at IS NULL OR claimed_at < UTC_TIMESTAMP() - INTERVAL :stale SECOND) "
           f"AND NOT EXISTS (SELECT 1 FROM repair_run r WHERE r.token = inconsistency.claimed_by))))) "
           f"ORDER BY next_retry_at, id LIMIT :limit")
    values: dict[str, Any] = {**params, "token": token, "statuses": [str(s) for s in statuses],
                              "dead": int(dead_after_s), "stale": int(stale_after_s), "limit": limit}
    if take_over:
        values["take_over"] = list(take_over)
    return _execute(engine, sql, values)


def claim_one(engine: Engine, entry_id: int, token: str, *, statuses: Sequence[str], stale_after_s: float) -> bool:
    """Claim one entry by id; False when another worker holds it."""
    sql = ("UPDATE inconsistency SET status = 'repairing', claimed_by = :token, claimed_at = UTC_TIMESTAMP() "
           "WHERE id = :id AND (status IN :statuses OR (status = 'repairing' AND "
           "(claimed_at IS NULL OR claimed_at < UTC_TIMESTAMP() - INTERVAL :stale SECOND)))")
    return _execute(engine, sql, {"token": token, "id": entry_id, "statuses": [str(s) for s in statuses],
                                  "stale": int(stale_after_s)}) == 1


def holders(engine: Engine, filters: LedgerFilter, exclude_token: str) -> list[dict[str, Any]]:
    """Who holds `repairing` entries matching `filters`: per token, the count, the oldest claim's age and the
    run's registry row (run_id … heartbeat age; NULL for an unregistered worker)."""
    where, params = filter_sql(filters, "i")
    sql = (f"SELECT i.claimed_by AS token, COUNT(*) AS entries, "
           f"TIMESTAMPDIFF(SECOND, MIN(i.claimed_at), UTC_TIMESTAMP()) AS claim_age_s, r.run_id, r.kind, "
           f"r.host, r.pid, r.status, r.started_at, "
           f"TIMESTAMPDIFF(SECOND, r.heartbeat_at, UTC_TIMESTAMP()) AS heartbeat_age_s "
           f"FROM inconsistency i LEFT JOIN repair_run r ON r.token = i.claimed_by "
           f"WHERE {where} AND i.status = 'repairing' AND i.claimed_by <> :exclude "
           f"GROUP BY i.claimed_by, r.run_id, r.kind, r.host, r.pid, r.status, r.started_at, r.heartbeat_at "
           f"ORDER BY i.claimed_by")
    with engine.connect() as conn:
        rows = conn.execute(_statement(sql, params), {**params, "exclude": exclude_token}).mappings().all()
    return [{str(k): v for k, v in r.items()} for r in rows]


def close_entries(engine: Engine, token: str, outcomes: Mapping[int, tuple[str, str | None]]) -> int:
    """Set status (repaired/resolved) and repair_id of claimed entries (one statement per 200 entries: a CASE has
    to be short, MariaDB evaluates it arm by arm for every row)."""
    ids = list(outcomes)
    return sum(_close_chunk(engine, token, {i: outcomes[i] for i in ids[s:s + 200]}) for s in range(0, len(ids), 200))


def _close_chunk(engine: Engine, token: str, outcomes: Mapping[int, tuple[str, str | None]]) -> int:
    if not outcomes:
        return 0
    params: dict[str, Any] = {"token": token, "ids": list(outcomes)}
    for n, (entry_id, (status, repair_id)) in enumerate(outcomes.items()):
        params.update({f"i{n}": entry_id, f"s{n}": str(status), f"r{n}": repair_id})
    with engine.begin() as conn:
        return int(conn.execute(_close_statement(len(outcomes)), params).rowcount)


@functools.lru_cache(maxsize=8)
def _close_statement(n: int) -> TextClause:
    """The close UPDATE for `n` entries (parsed once per size: a full chunk has 600 parameters)."""
    status_arms = " ".join(f"WHEN :i{k} THEN :s{k}" for k in range(n))
    repair_arms = " ".join(f"WHEN :i{k} THEN :r{k}" for k in range(n))
    return _statement(f"UPDATE inconsistency SET status = CASE id {status_arms} END, "
                      f"repair_id = COALESCE(CASE id {repair_arms} END, repair_id), claimed_by = NULL, "
                      f"claimed_at = NULL, next_retry_at = NULL, last_error = NULL, updated_at = UTC_TIMESTAMP() "
                      f"WHERE id IN :ids AND claimed_by = :token", {"ids": []})


def fail_entry(engine: Engine, token: str, entry_id: int, *, status: str, attempts: int, error: str,
               retry_in_s: float | None) -> None:
    """Record a failed attempt of a claimed entry: `status` with next_retry_at `retry_in_s` from now (or NULL)."""
    retry_sql = "NULL" if retry_in_s is None else "UTC_TIMESTAMP() + INTERVAL :delay MICROSECOND"
    sql = (f"UPDATE inconsistency SET status = :status, attempts = :attempts, last_error = :error, "
           f"next_retry_at = {retry_sql}, claimed_by = NULL, claimed_at = NULL, updated_at = UTC_TIMESTAMP() "
           f"WHERE id = :id AND claimed_by = :token")
    params: dict[str, Any] = {"status": str(status), "attempts": attempts, "error": error[:4000], "id": entry_id,
                              "token": token}
    if retry_in_s is not None:
        params["delay"] = int(retry_in_s * 1e6)
    _execute(engine, sql, params)


def release(engine: Engine, token: str, ids: Iterable[int], status: str) -> int:
    """Give claimed entries back untouched (dry runs, throttled batches, shutdown)."""
    ids = list(ids)
    if not ids:
        return 0
    return _execute(engine, "UPDATE inconsistency SET status = :status, claimed_by = NULL, claimed_at = NULL "
                            "WHERE id IN :ids AND claimed_by = :token",
                    {"status": str(status), "ids": ids, "token": token})


def reopen(engine: Engine, pair: str, pks: Sequence[str], reason: str) -> int:
    """Put closed entries of these keys back to `open` (a rollback brought their difference back); entries held
    or open already are left as they are."""
    keys = list(dict.fromkeys(pks))
    closed = [str(s) for s in CLOSED_STATUSES]
    return sum(_execute(engine, "UPDATE inconsistency SET status = 'open', next_retry_at = NULL, claimed_by = NULL, "
                                "claimed_at = NULL, last_error = :reason, updated_at = UTC_TIMESTAMP() "
                                "WHERE pair = :pair AND pk IN :pks AND status IN :closed",
                        {"reason": reason[:4000], "pair": pair, "pks": keys[s:s + 500], "closed": closed})
               for s in range(0, len(keys), 500))
