"""What a repair run reports per key and in total (pure values): the CLI prints them, the ledger is closed from them.

Statuses of a key: `repaired` (we wrote, and the re-check says consistent), `resolved` (consistent without a
write by this run), `planned` (dry-run / print), `left` (still inconsistent: the guard kept failing, or no action
was possible), `failed` (the write failed), `dirty` and `refused` (compensation refused; parked at once, an
operator decides). Exit codes follow pt-table-sync: 2 when differences are left, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdc_repair.model.ledger import LedgerStatus
from cdc_repair.repair.compensate import REFUSED
from cdc_repair.repair.planner import DIRTY

DONE_REPAIRED = LedgerStatus.REPAIRED.value  # we wrote, and the re-check says consistent
DONE_RESOLVED = LedgerStatus.RESOLVED.value  # consistent without a write by this run
PLANNED = "planned"  # dry-run / print
LEFT = "left"  # still inconsistent (guard kept failing, or no action possible)
FAILED = "failed"  # the write failed
DIRTY_KEY = "dirty"  # compensation refused: the source changed since the event
REFUSED_KEY = "refused"  # compensation refused: untrusted message, binlog gone, or nothing safe to revert to
PARKED_KINDS = {DIRTY: DIRTY_KEY, REFUSED: REFUSED_KEY}  # plan kinds that need an operator: parked at once
FINISHED_OK = frozenset({DONE_REPAIRED, DONE_RESOLVED})


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
