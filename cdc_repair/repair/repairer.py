"""Run repairs for ledger entries or given keys: plan from fresh reads, apply guarded, re-check, record (I/O).

One pass per pair, in rounds: every round re-reads the source and target rows of the keys still open,
plans (forward or compensate), applies the writes in batches (see `executor`), and keeps the keys that were
written or whose guard failed for the next round, whose fresh read is the re-check. A key is finished when
the rules say it is consistent; after `max_rounds` writing rounds it is left (retried later with backoff).

Ledger entries are closed only when the re-check says ok: `repaired` with the repair id when we wrote,
`resolved` when the key was already consistent. A key found consistent whose row carries an undo record
newer than the entry (a repairer died between the row commit and the ledger update) is closed `repaired`
with that repair id, and the missing repair_log row is added: nothing is lost or done twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, placeholders, quote_columns
from cdc_repair.errors import BinlogUnavailableError, CdcRepairError
from cdc_repair.metrics import REPAIR_LATENCY, REPAIRS
from cdc_repair.model.history import ChangeHistory
from cdc_repair.model.keys import parse_pk
from cdc_repair.model.ledger import LedgerEntry, LedgerStatus
from cdc_repair.model.position import BinlogPosition
from cdc_repair.model.rules import evaluate
from cdc_repair.model.verdict import NOT_APPLICABLE, OK
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import Plan, RepairAction, Side, Strategy
from cdc_repair.repair.compensate import REFUSED, History, Unavailable, plan_compensate, since_position
from cdc_repair.repair.executor import Applied, Failed, GuardFailed, Outcome, RowServer, apply_batch
from cdc_repair.repair.planner import DIRTY, plan_forward
from cdc_repair.repair.store import StateStore, new_id
from cdc_repair.repair.throttle import RateLimiter, wait_while_busy
from cdc_repair.repair.undo_log import undo_table

log = logging.getLogger(__name__)

# Key result statuses
DONE_REPAIRED = LedgerStatus.REPAIRED.value  # we wrote, and the re-check says consistent
DONE_RESOLVED = LedgerStatus.RESOLVED.value  # consistent without a write by this run
PLANNED = "planned"  # dry-run / print
LEFT = "left"  # still inconsistent (guard kept failing, or no action possible)
FAILED = "failed"  # the write failed
DIRTY_KEY = "dirty"  # compensation refused: the source changed since the event
REFUSED_KEY = "refused"  # compensation refused: untrusted message, binlog gone, or nothing safe to revert to
PARKED_KINDS = {DIRTY: DIRTY_KEY, REFUSED: REFUSED_KEY}  # plan kinds that need an operator: parked at once
# The binlog re-reader (source/), wired by name like app.py's stages: repair/ never imports source/.
FINISHED_OK = frozenset({DONE_REPAIRED, DONE_RESOLVED})


@dataclass(frozen=True, slots=True)
class WorkItem:
    pair: str
    pk: str
    entry: LedgerEntry | None = None
    key: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", parse_pk(self.pk))


@dataclass
class KeyResult:
    pair: str
    pk: str
    kind: str  # verdict kind when first planned
    status: str
    strategy: str
    actions: list[str] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    repair_ids: list[str] = field(default_factory=list)
    reason: str = ""
    transient: bool = True
    entry_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair, "pk": self.pk, "kind": self.kind, "status": self.status,
                "strategy": self.strategy, "actions": self.actions, "sql": self.sql, "repair_ids": self.repair_ids,
                "reason": self.reason, "ledger_id": self.entry_id}


@dataclass
class RunReport:
    run_id: str
    mode: str  # dry-run | print | execute
    results: list[KeyResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def differences_left(self) -> int:
        if self.mode != "execute":
            return self.count(PLANNED) + self.count(LEFT) + self.count(DIRTY_KEY) + self.count(REFUSED_KEY)
        return sum(1 for r in self.results if r.status not in FINISHED_OK)

    @property
    def exit_code(self) -> int:
        return 2 if self.differences_left else 0

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.mode, "summary": self.summary(),
                "differences_left": self.differences_left, "results": [r.to_json() for r in self.results]}


class Repairer:
    """Plans and applies repairs for one process (not thread-safe: one per worker thread)."""

    def __init__(self, settings: Settings, store: StateStore | None = None, *, run_id: str | None = None,
                 max_rounds: int = 3, before_write: Callable[[Sequence[RepairAction]], None] | None = None,
                 stop: threading.Event | None = None, limiters: dict[str, RateLimiter] | None = None,
                 history: ChangeHistory | None = None) -> None:
        self.settings = settings
        self.store = store
        self.run_id = run_id or new_id("run")
        self.max_rounds = max_rounds
        self.before_write = before_write  # test hook: runs between planning a batch and applying it
        self.stop = stop
        self._servers: dict[str, RowServer] = {}
        self._local = threading.local()  # per writer thread: its own connections
        self._thread_servers: list[RowServer] = []
        self._thread_servers_lock = threading.Lock()
        self._pending_log: list[dict[str, Any]] = []
        self._limiters = limiters if limiters is not None else {}  # per pair; a worker keeps them across passes
        self._history = history
        self.record_sql = False  # --print --execute: keep each applied write's guarded statement in its result

    def close(self) -> None:
        for server in [*self._servers.values(), *self._thread_servers]:
            server.close()
        self._servers.clear()
        self._thread_servers.clear()
        self._local = threading.local()

    def server(self, name: str) -> RowServer:
        if name not in self._servers:
            self._servers[name] = RowServer(name, self.settings.server_dsn(name))
        return self._servers[name]

    def strategy_for(self, pair: PairConfig, override: str | None = None) -> Strategy:
        return Strategy(override or pair.strategy or self.settings.repair.strategy)

    # ------------------------------------------------------------ planning

    def plan(self, pair: PairConfig, items: Sequence[WorkItem], strategy: Strategy) -> list[Plan]:
        """Plans for `items` from rows read now (one IN query per side per 500 keys)."""
        if not items:
            return []
        src, tgt = self.server(pair.source.server), self.server(pair.target.server)
        keys = [list(i.key) for i in items]
        try:
            # The side to be written is read first: a writer updates the source before the target, so a source
            # read *after* the target read is at least as new as the observed target row, and the guarded
            # write can never move the target back to an older version (found by test_repair_concurrent).
            if strategy is Strategy.COMPENSATE:
                source_rows = src.read(pair.source.table, pair.key, keys)
                target_rows = tgt.read(pair.target.table, pair.key, keys)
            else:
                target_rows = tgt.read(pair.target.table, pair.key, keys)
                source_rows = src.read(pair.source.table, pair.key, keys)
            target_cols = tgt.columns(pair.target.table)
        except CdcRepairError:
            raise
        except Exception as exc:
            src.reset()
            tgt.reset()
            raise mysql.classify(exc, f"pair '{pair.name}': reading rows to repair") from exc
        histories = self._histories(pair, items) if strategy is Strategy.COMPENSATE else {}
        plans = []
        for item in items:
            s, t = source_rows.get(item.pk), target_rows.get(item.pk)
            if strategy is Strategy.COMPENSATE:
                events = item.entry.events if item.entry is not None else []
                plans.append(plan_compensate(pair, item.key, s, t, events, histories.get(item.pk)))
            else:
                plans.append(plan_forward(pair, item.key, s, t, target_cols))
        return plans

    def _histories(self, pair: PairConfig, items: Sequence[WorkItem]) -> dict[str, History]:
        """The keys' changes re-read from the source's binlog, from the earliest recorded coordinates on (one
        read for all; per start position when that one is gone, so one purged key does not refuse the rest)."""
        starts: dict[str, BinlogPosition] = {}
        for item in items:
            since = since_position(item.entry.events) if item.entry is not None else None
            if since is not None:
                starts[item.pk] = since
        if not starts:
            return {}
        first = min(starts.values(), key=BinlogPosition.key)
        try:
            return self._read_history(pair, [i for i in items if i.pk in starts], first)
        except BinlogUnavailableError as exc:
            if len({p.key() for p in starts.values()}) == 1:
                return {pk: Unavailable(str(exc)) for pk in starts}
        out: dict[str, History] = {}
        for since in sorted(set(starts.values()), key=BinlogPosition.key):
            group = [i for i in items if starts.get(i.pk) == since]
            try:
                out.update(self._read_history(pair, group, since))
            except BinlogUnavailableError as exc:
                out.update((i.pk, Unavailable(str(exc))) for i in group)
        return out

    def _read_history(self, pair: PairConfig, items: Sequence[WorkItem],
                      start: BinlogPosition) -> dict[str, History]:
        found = self.history.changes(pair.source.server, pair.source.table, pair.key, [i.key for i in items], start)
        return {i.pk: found.get(i.key, []) for i in items}

    @property
    def history(self) -> ChangeHistory:
        if self._history is None:  # the composition root gives one (app.py, commands/repair.py): source/ reads binlogs
            raise BinlogUnavailableError("no binlog reader was given to this repairer, so compensation cannot read "
                                         "before-images; repair it with --strategy forward")
        return self._history

    def dry_run(self, pair: PairConfig, items: Sequence[WorkItem], strategy: Strategy, *,
                with_sql: bool = False) -> list[KeyResult]:
        """What `repair` would do now, without writing (for --dry-run and --print)."""
        out = []
        for item, plan in zip(items, self.plan(pair, items, strategy), strict=True):
            res = KeyResult(pair.name, item.pk, plan.kind, PLANNED if plan.action else _idle_status(plan),
                            strategy.value, reason=plan.reason, entry_id=item.entry.id if item.entry else None)
            if plan.action is not None:
                res.actions.append(plan.action.describe())
                if with_sql:
                    res.sql.append(rsql.render(rsql.guarded_statement(plan.action)))
            out.append(res)
        return out

    # ------------------------------------------------------------ executing

    def execute(self, pair: PairConfig, items: Sequence[WorkItem], strategy: Strategy) -> list[KeyResult]:
        """Repair `items` of one pair: rounds of plan → guarded write → re-check (see module docstring)."""
        t0 = time.monotonic()
        results: dict[str, KeyResult] = {}
        remaining = {i.pk: i for i in items}
        first_round_consistent: list[WorkItem] = []
        for round_no in range(self.max_rounds + 1):
            if not remaining:
                break
            plans = self.plan(pair, list(remaining.values()), strategy)
            writes: list[tuple[WorkItem, RepairAction]] = []
            for plan in plans:
                item = remaining[plan.pk]
                res = results.setdefault(plan.pk, KeyResult(pair.name, plan.pk, plan.kind, LEFT, strategy.value,
                                                            entry_id=item.entry.id if item.entry else None))
                if plan.action is None:
                    del remaining[plan.pk]
                    if plan.kind in (OK, NOT_APPLICABLE):
                        res.status = DONE_REPAIRED if res.repair_ids else DONE_RESOLVED
                        if round_no == 0:
                            first_round_consistent.append(item)
                    else:
                        res.status = PARKED_KINDS.get(plan.kind, LEFT)
                        res.transient = plan.kind not in PARKED_KINDS
                        res.reason = plan.reason
                        REPAIRS.labels(pair.name, strategy.value, res.status).inc()
                        if plan.kind in PARKED_KINDS:
                            log.warning("compensation of %s %s %s: %s", pair.name, plan.pk, res.status, plan.reason)
                elif round_no == self.max_rounds:
                    del remaining[plan.pk]
                    res.status = LEFT
                    res.reason = (f"still {plan.kind} after {self.max_rounds} repair rounds "
                                  f"(concurrent writes keep changing the row?)")
                else:
                    writes.append((item, plan.action))
            applied = self._apply(pair, strategy, writes, results, remaining)
            self._recheck(pair, applied, results, remaining)
        if first_round_consistent:
            self._recover(pair, first_round_consistent, results)
        out = [results[i.pk] for i in items if i.pk in results]
        summary: dict[str, int] = {}
        for r in out:
            summary[r.status] = summary.get(r.status, 0) + 1
        log.info("repair %s (%s, run %s): %s in %.2f s", pair.name, strategy.value, self.run_id,
                 ", ".join(f"{n} {s}" for s, n in sorted(summary.items())) or "nothing to do",
                 time.monotonic() - t0)
        return out

    def _apply(self, pair: PairConfig, strategy: Strategy, writes: list[tuple[WorkItem, RepairAction]],
               results: dict[str, KeyResult], remaining: dict[str, WorkItem]) -> list[Applied]:
        cfg = self.settings.repair
        applied: list[Applied] = []
        groups: dict[Side, list[RepairAction]] = {}
        for _, action in writes:
            groups.setdefault(action.side, []).append(action)
        limiter = self._limiters.setdefault(pair.name, RateLimiter(cfg.rate_limit_per_s))
        for side, actions in groups.items():
            name = pair.target.server if side is Side.TARGET else pair.source.server
            server = self.server(name)
            actions = _by_key(actions)  # contiguous key ranges per batch: concurrent batches rarely meet in a gap
            batches = [actions[s:s + cfg.batch_size] for s in range(0, len(actions), cfg.batch_size)]
            threads = max(1, min(cfg.threads, len(batches)))
            pool = ThreadPoolExecutor(threads, thread_name_prefix="repair") if threads > 1 else None
            pending: deque[Future[tuple[list[Outcome], float]]] = deque()
            try:
                for batch in batches:
                    limiter.acquire(len(batch))
                    wait_while_busy(server.threads_running, cfg.busy_threads_running, stop=self.stop)
                    if self.before_write is not None:
                        self.before_write(batch)
                    if pool is None:
                        applied += self._consume(pair, strategy, *self._run_batch(server, batch), results,
                                                 remaining)
                        continue
                    pending.append(pool.submit(self._run_batch_threaded, name, batch))
                    while len(pending) > threads + 1:  # keep the writers busy while this thread logs
                        applied += self._consume(pair, strategy, *pending.popleft().result(), results, remaining)
                while pending:
                    applied += self._consume(pair, strategy, *pending.popleft().result(), results, remaining)
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                self._flush_log()
        return applied

    def _run_batch(self, server: RowServer, batch: Sequence[RepairAction]) -> tuple[list[Outcome], float]:
        t0 = time.perf_counter()
        outcomes = apply_batch(server, batch, [new_id("rp") for _ in batch], run_id=self.run_id)
        return outcomes, time.perf_counter() - t0

    def _run_batch_threaded(self, name: str, batch: Sequence[RepairAction]) -> tuple[list[Outcome], float]:
        """The same, on this worker thread's own connection (batches hold disjoint keys: no lock conflicts)."""
        servers: dict[str, RowServer] | None = getattr(self._local, "servers", None)
        if servers is None:
            servers = self._local.servers = {}
        if name not in servers:
            servers[name] = RowServer(name, self.settings.server_dsn(name))
            with self._thread_servers_lock:
                self._thread_servers.append(servers[name])
        return self._run_batch(servers[name], batch)

    def _consume(self, pair: PairConfig, strategy: Strategy, outcomes: list[Outcome], elapsed: float,
                 results: dict[str, KeyResult], remaining: dict[str, WorkItem]) -> list[Applied]:
        """Account one applied batch (main thread): results, metrics, repair_log."""
        applied: list[Applied] = []
        logged = []
        n = max(1, len(outcomes))
        counts = {"applied": 0, "guard_failed": 0, "failed": 0}
        for out in outcomes:
            res = results[out.action.pk]
            if isinstance(out, Applied):
                res.repair_ids.append(out.xid)
                res.actions.append(out.action.describe())
                if self.record_sql:
                    res.sql.append(rsql.render(rsql.guarded_statement(out.action)))
                counts["applied"] += 1
                logged.append(self._log_row(out, strategy))
                applied.append(out)
            elif isinstance(out, GuardFailed):
                counts["guard_failed"] += 1
                log.info("guard failed for %s %s: the row changed since it was read; re-checking",
                         pair.name, out.action.pk)
            elif isinstance(out, Failed):
                counts["failed"] += 1
                logged.append({**self._log_row(out, strategy), "status": "failed", "error": out.error[:4000]})
                res.status, res.reason = FAILED, out.error  # retried with backoff, parked after max
                res.transient = res.transient and not out.park  # e.g. a key matching several rows
                remaining.pop(out.action.pk, None)
        for outcome, count in counts.items():
            if count:
                REPAIRS.labels(pair.name, strategy.value, outcome).inc(count)
        latency = REPAIR_LATENCY.labels(strategy.value)
        for _ in range(counts["applied"]):  # one sample per applied repair: its share of the batch's round trip
            latency.observe(elapsed / n)
        self._pending_log.extend(logged)
        if len(self._pending_log) >= 500:
            self._flush_log()
        return applied

    def _flush_log(self) -> None:
        """Write the buffered repair_log rows (every 500 rows and at the end of each round). A crash before the
        flush loses no repair: the undo records committed with the rows are the truth, and `_recover` re-adds
        their repair_log rows on the next run."""
        if self._pending_log and self.store is not None:
            self.store.log_repairs(self._pending_log)
        self._pending_log = []

    def _recheck(self, pair: PairConfig, applied: list[Applied], results: dict[str, KeyResult],
                 remaining: dict[str, WorkItem]) -> None:
        """Re-check written keys: the written side as the repair committed it (its after-image, read inside the
        repair transaction) against the other side read now. Consistent keys are done; the others go to the
        next round, which re-reads both sides and plans again."""
        if not applied:
            return
        for side in (Side.TARGET, Side.SOURCE):
            done = [a for a in applied if a.action.side is side]
            if not done:
                continue
            other = pair.source if side is Side.TARGET else pair.target
            keys = [list(remaining[a.action.pk].key) for a in done if a.action.pk in remaining]
            try:
                fresh = self.server(other.server).read(other.table, pair.key, keys)
            except Exception as exc:
                self.server(other.server).reset()
                raise mysql.classify(exc, f"pair '{pair.name}': re-checking repaired rows") from exc
            for a in done:
                item = remaining.get(a.action.pk)
                if item is None:
                    continue
                now = fresh.get(a.action.pk)
                src, tgt = (now, a.after) if side is Side.TARGET else (a.after, now)
                verdict = evaluate(pair, src, tgt, item.key)
                if not verdict.is_mismatch:
                    del remaining[a.action.pk]
                    results[a.action.pk].status = DONE_REPAIRED

    def _log_row(self, applied: Applied | Failed, strategy: Strategy) -> dict[str, Any]:
        a = applied.action
        return {"repair_id": applied.xid, "run_id": self.run_id, "pair": a.pair, "pk": a.pk,
                "strategy": strategy.value, "action": f"{a.op.value}:{a.label}", "side": a.side.value,
                "status": "applied", "sql_text": _short_sql(a), "error": None}

    def _recover(self, pair: PairConfig, items: list[WorkItem], results: dict[str, KeyResult]) -> None:
        """Consistent keys whose row has an undo record newer than their ledger entry: a repair by a run that
        died before updating the ledger. Link it (status repaired) and add its missing repair_log row."""
        with_entries = [i for i in items if i.entry is not None]
        if not with_entries:
            return
        since = min(i.entry.first_seen for i in with_entries if i.entry is not None)
        found: dict[str, dict[str, Any]] = {}
        for side, ref in ((Side.TARGET, pair.target), (Side.SOURCE, pair.source)):
            server = self.server(ref.server)
            pks = [i.pk for i in with_entries]
            stmt = Statement(
                f"SELECT {quote_columns(('xid', 'pk', 'sql_type', 'strategy', 'log_created'))} "
                f"FROM {undo_table(ref.schema_name)} WHERE `table_name` = %s AND `log_status` = 0 "
                f"AND `pk` IN ({placeholders(len(pks))}) AND `log_created` >= %s ORDER BY `log_created`",
                (ref.table, *pks, since))
            try:
                rows = mysql.fetch_dicts(server.conn, stmt)
            except Exception as exc:
                if "1146" not in str(mysql.classify(exc, "undo lookup")):
                    raise mysql.classify(exc, f"pair '{pair.name}': looking up undo records") from exc
                continue
            for row in rows:
                found[str(row["pk"])] = {**row, "side": side}
        logged = []
        for item in with_entries:
            hit = found.get(item.pk)
            assert item.entry is not None
            if hit is None or hit["log_created"] < item.entry.first_seen:
                continue
            row = hit
            res = results[item.pk]
            res.status = DONE_REPAIRED
            res.repair_ids.append(str(row["xid"]))
            res.reason = "repair applied by an earlier run that stopped before updating the ledger"
            logged.append({"repair_id": row["xid"], "run_id": self.run_id, "pair": pair.name, "pk": item.pk,
                           "strategy": row["strategy"], "action": str(row["sql_type"]).lower(),
                           "side": row["side"].value, "status": "applied", "sql_text": None,
                           "error": "recovered from the undo log after an interrupted run"})
        if logged and self.store is not None:
            self.store.log_repairs(logged)

    # ------------------------------------------------------------ ledger bookkeeping

    def finish(self, token: str, items: Iterable[WorkItem], results: Iterable[KeyResult]) -> dict[str, int]:
        """Close, retry-later or park the claimed entries according to their results."""
        assert self.store is not None
        cfg = self.settings.repair
        by_pk = {(r.pair, r.pk): r for r in results}
        closes: dict[int, tuple[str, str | None]] = {}
        stats = {"closed": 0, "retry": 0, "parked": 0}
        for item in items:
            if item.entry is None:
                continue
            res = by_pk.get((item.pair, item.pk))
            if res is None:
                self.store.release(token, [item.entry.id])
                continue
            if res.status in FINISHED_OK:
                closes[item.entry.id] = (LedgerStatus(res.status),  # DONE_REPAIRED or DONE_RESOLVED
                                         res.repair_ids[-1] if res.repair_ids else None)
                continue
            status = self.store.fail_entry(token, item.entry, f"{res.status}: {res.reason}",
                                           max_attempts=cfg.max_attempts, backoff=cfg.backoff,
                                           park=not res.transient)
            if status == "failed":
                stats["parked"] += 1
                REPAIRS.labels(item.pair, res.strategy, "parked").inc()
                log.warning("ledger entry %s %s parked as failed after %d attempts: %s", item.pair, item.pk,
                            item.entry.attempts + 1, res.reason)
            else:
                stats["retry"] += 1
        stats["closed"] = self.store.close_entries(token, closes)
        return stats


def _by_key(actions: list[RepairAction]) -> list[RepairAction]:
    try:
        return sorted(actions, key=lambda a: tuple(v for _, v in a.key))
    except TypeError:  # mixed key types (NULL, str vs int): keep the ledger order
        return actions


def _idle_status(plan: Plan) -> str:
    if plan.kind in (OK, NOT_APPLICABLE):
        return DONE_RESOLVED
    return PARKED_KINDS.get(plan.kind, LEFT)


def _short_sql(action: RepairAction) -> str:
    """What the guarded write did, in SQL words without the values (repair_log.sql_text is for humans; the
    values are in the undo record)."""
    where = " AND ".join(f"{k} = {rsql.literal(v)}" for k, v in action.key)
    keys = action.key_dict
    cols = ", ".join(c for c in action.values if c not in keys)
    if action.op.value == "insert":
        return f"INSERT INTO {action.table} ({', '.join(action.values)}) -- if absent: {where}"
    if action.op.value == "update":
        return f"UPDATE {action.table} SET {cols} WHERE {where} -- if unchanged since read"
    return f"DELETE FROM {action.table} WHERE {where} -- if unchanged since read"
