"""Run repairs for ledger entries or given keys: plan from fresh reads, apply guarded, re-check, record (I/O).

One pass per pair, in rounds: every round re-reads the source and target rows of the keys still open,
plans (forward or compensate: `planning.py`), applies the writes in batches (`batches.py`, `executor.py`), and
keeps the keys that were written or whose guard failed for the next round, whose fresh read is the re-check. A
key is finished when the rules say it is consistent; after `max_rounds` writing rounds it is left (retried later
with backoff).

Ledger entries are closed only when the re-check says ok (`ledger_close.py`): `repaired` with the repair id when
we wrote, `resolved` when the key was already consistent. A key found consistent whose row carries an undo record
newer than the entry (a repairer died between the row commit and the ledger update) is closed `repaired` with
that repair id, and the missing repair_log row is added (`recovery.py`): nothing is lost or done twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.errors import BinlogUnavailableError
from cdc_repair.metrics import REPAIRS
from cdc_repair.model.history import ChangeHistory
from cdc_repair.model.keys import parse_pk
from cdc_repair.model.ledger import LedgerEntry
from cdc_repair.model.rules import evaluate
from cdc_repair.model.verdict import NOT_APPLICABLE, OK
from cdc_repair.repair.accounting import Accounting
from cdc_repair.repair.actions import Plan, RepairAction, Side, Strategy
from cdc_repair.repair.batches import BatchWriter
from cdc_repair.repair.executor import Applied, RowServer
from cdc_repair.repair.ledger_close import finish_entries
from cdc_repair.repair.planning import RowPlanner
from cdc_repair.repair.recovery import recover
from cdc_repair.repair.results import (
    DIRTY_KEY,
    DONE_REPAIRED,
    DONE_RESOLVED,
    FAILED,
    FINISHED_OK,
    LEFT,
    PARKED_KINDS,
    PLANNED,
    REFUSED_KEY,
    KeyResult,
    RunReport,
)
from cdc_repair.repair.row_ops import guarded_statement
from cdc_repair.repair.sql import render
from cdc_repair.repair.store import StateStore, new_id
from cdc_repair.repair.throttle import RateLimiter

__all__ = ["DIRTY_KEY", "DONE_REPAIRED", "DONE_RESOLVED", "FAILED", "FINISHED_OK", "LEFT", "PLANNED", "REFUSED_KEY",
           "KeyResult", "Repairer", "RunReport", "WorkItem"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkItem:
    pair: str
    pk: str
    entry: LedgerEntry | None = None
    key: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", parse_pk(self.pk))


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
        self._servers: dict[str, RowServer] = {}
        self._history = history
        self.planner = RowPlanner(self.server, lambda: self.history)
        self.writer = BatchWriter(settings, self.server, self.run_id, stop=stop, before_write=before_write,
                                  limiters=limiters if limiters is not None else {})
        self.record_sql = False  # --print --execute: keep each applied write's guarded statement in its result

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        self.writer.close()

    def server(self, name: str) -> RowServer:
        if name not in self._servers:
            self._servers[name] = RowServer(name, self.settings.server_dsn(name))
        return self._servers[name]

    def strategy_for(self, pair: PairConfig, override: str | None = None) -> Strategy:
        return Strategy(override or pair.strategy or self.settings.repair.strategy)

    @property
    def history(self) -> ChangeHistory:
        if self._history is None:  # the composition root gives one (app.py, commands/repair.py): source/ reads binlogs
            raise BinlogUnavailableError("no binlog reader was given to this repairer, so compensation cannot read "
                                         "before-images; repair it with --strategy forward")
        return self._history

    def plan(self, pair: PairConfig, items: Sequence[WorkItem], strategy: Strategy) -> list[Plan]:
        """Plans for `items` from rows read now (see `planning.py`)."""
        return self.planner.plan(pair, items, strategy)

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
                    res.sql.append(render(guarded_statement(plan.action)))
            out.append(res)
        return out

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
            writes = self._triage(pair, strategy, plans, round_no, results, remaining, first_round_consistent)
            sink = Accounting(pair, strategy, self.run_id, self.store, results, remaining,
                              record_sql=self.record_sql)
            self._recheck(pair, self.writer.apply(pair, writes, sink), results, remaining)
        if first_round_consistent:
            recover(pair, first_round_consistent, results, self.server, self.store, self.run_id)
        out = [results[i.pk] for i in items if i.pk in results]
        summary: dict[str, int] = {}
        for r in out:
            summary[r.status] = summary.get(r.status, 0) + 1
        log.info("repair %s (%s, run %s): %s in %.2f s", pair.name, strategy.value, self.run_id,
                 ", ".join(f"{n} {s}" for s, n in sorted(summary.items())) or "nothing to do",
                 time.monotonic() - t0)
        return out

    def _triage(self, pair: PairConfig, strategy: Strategy, plans: Sequence[Plan], round_no: int,
                results: dict[str, KeyResult], remaining: dict[str, WorkItem],
                first_round_consistent: list[WorkItem]) -> list[RepairAction]:
        """Finish the keys that need no write (consistent, parked, or out of rounds); return the writes."""
        writes: list[RepairAction] = []
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
                    continue
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
                writes.append(plan.action)
        return writes

    def _recheck(self, pair: PairConfig, applied: list[Applied], results: dict[str, KeyResult],
                 remaining: dict[str, WorkItem]) -> None:
        """Re-check written keys: the written side as the repair committed it (its after-image, read inside the
        repair transaction) against the other side read now. Consistent keys are done; the others go to the
        next round, which re-reads both sides and plans again."""
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
                if not evaluate(pair, src, tgt, item.key).is_mismatch:
                    del remaining[a.action.pk]
                    results[a.action.pk].status = DONE_REPAIRED

    def finish(self, token: str, items: Iterable[WorkItem], results: Iterable[KeyResult]) -> dict[str, int]:
        """Close, retry-later or park the claimed entries according to their results (`ledger_close.py`)."""
        assert self.store is not None
        return finish_entries(self.store, self.settings.repair, token, items, results)


def _idle_status(plan: Plan) -> str:
    if plan.kind in (OK, NOT_APPLICABLE):
        return DONE_RESOLVED
    return PARKED_KINDS.get(plan.kind, LEFT)
