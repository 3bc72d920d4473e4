"""Account the outcomes of applied batches: key results, metrics, and the buffered repair_log rows (I/O).

Why buffered: one repair_log INSERT per 500 rows (and at the end of each round) instead of one per batch. A crash
before the flush loses no repair: the undo records committed with the rows are the truth, and the next run's
recovery (`recovery.py`) re-adds their repair_log rows.
"""

from __future__ import annotations

import logging
from typing import Any

from cdc_repair.config import PairConfig
from cdc_repair.metrics import REPAIR_LATENCY, REPAIRS
from cdc_repair.repair.actions import Strategy
from cdc_repair.repair.executor import Applied, Failed, GuardFailed, Outcome
from cdc_repair.repair.results import FAILED, KeyResult
from cdc_repair.repair.row_ops import executor_for, guarded_statement
from cdc_repair.repair.sql import render
from cdc_repair.repair.store import StateStore

log = logging.getLogger(__name__)

LOG_FLUSH_ROWS = 500


class Accounting:
    """One round's bookkeeping on the calling thread: `consume` each finished batch, `flush` at the end."""

    def __init__(self, pair: PairConfig, strategy: Strategy, run_id: str, store: StateStore | None,
                 results: dict[str, KeyResult], remaining: dict[str, Any], *, record_sql: bool = False) -> None:
        self.pair = pair
        self.strategy = strategy
        self.run_id = run_id
        self.store = store
        self.results = results
        self.remaining = remaining  # keys still to finish: a failed key leaves it
        self.record_sql = record_sql  # --print --execute: keep each applied write's guarded statement
        self._pending: list[dict[str, Any]] = []

    def consume(self, outcomes: list[Outcome], elapsed: float) -> list[Applied]:
        """Account one applied batch: results, metrics, repair_log rows."""
        applied: list[Applied] = []
        counts = {"applied": 0, "guard_failed": 0, "failed": 0}
        for out in outcomes:
            res = self.results[out.action.pk]
            if isinstance(out, Applied):
                res.repair_ids.append(out.xid)
                res.actions.append(out.action.describe())
                if self.record_sql:
                    res.sql.append(render(guarded_statement(out.action)))
                counts["applied"] += 1
                self._pending.append(self.log_row(out))
                applied.append(out)
            elif isinstance(out, GuardFailed):
                counts["guard_failed"] += 1
                log.info("guard failed for %s %s: the row changed since it was read; re-checking",
                         self.pair.name, out.action.pk)
            elif isinstance(out, Failed):
                counts["failed"] += 1
                self._pending.append({**self.log_row(out), "status": "failed", "error": out.error[:4000]})
                res.status, res.reason = FAILED, out.error  # retried with backoff, parked after max
                res.transient = res.transient and not out.park  # e.g. a key matching several rows
                self.remaining.pop(out.action.pk, None)
        self._observe(counts, elapsed / max(1, len(outcomes)))
        if len(self._pending) >= LOG_FLUSH_ROWS:
            self.flush()
        return applied

    def _observe(self, counts: dict[str, int], per_row_s: float) -> None:
        for outcome, count in counts.items():
            if count:
                REPAIRS.labels(self.pair.name, self.strategy.value, outcome).inc(count)
        latency = REPAIR_LATENCY.labels(self.strategy.value)
        for _ in range(counts["applied"]):  # one sample per applied repair: its share of the batch's round trip
            latency.observe(per_row_s)

    def flush(self) -> None:
        """Write the buffered repair_log rows."""
        if self._pending and self.store is not None:
            self.store.log_repairs(self._pending)
        self._pending = []

    def log_row(self, outcome: Applied | Failed) -> dict[str, Any]:
        a = outcome.action
        return {"repair_id": outcome.xid, "run_id": self.run_id, "pair": a.pair, "pk": a.pk,
                "strategy": self.strategy.value, "action": f"{a.op.value}:{a.label}", "side": a.side.value,
                "status": "applied", "sql_text": executor_for(a).summary(a), "error": None}
