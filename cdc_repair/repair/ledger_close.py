"""Close, retry later or park the claimed ledger entries of a run from its key results (I/O, state DB).

Entries are closed only when the re-check said ok: `repaired` with the last repair id when this run wrote,
`resolved` when the key was already consistent. Any other result counts an attempt: back to `open` with a
backoff, or parked `failed` after `repair.max_attempts` (at once when retrying cannot help). Closing and failing
are guarded by the claim token, so a late writer whose claims were taken over changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cdc_repair.config import RepairConfig
from cdc_repair.metrics import REPAIRS
from cdc_repair.model.ledger import LedgerStatus
from cdc_repair.repair.results import FINISHED_OK, KeyResult
from cdc_repair.repair.store import StateStore

if TYPE_CHECKING:
    from cdc_repair.repair.repairer import WorkItem

log = logging.getLogger(__name__)


def finish_entries(store: StateStore, cfg: RepairConfig, token: str, items: Iterable[WorkItem],
                   results: Iterable[KeyResult]) -> dict[str, int]:
    """Update the claimed entries of `items` according to `results`; returns closed/retry/parked counts."""
    by_pk = {(r.pair, r.pk): r for r in results}
    closes: dict[int, tuple[str, str | None]] = {}
    stats = {"closed": 0, "retry": 0, "parked": 0}
    for item in items:
        if item.entry is None:
            continue
        res = by_pk.get((item.pair, item.pk))
        if res is None:
            store.release(token, [item.entry.id])
            continue
        if res.status in FINISHED_OK:
            closes[item.entry.id] = (LedgerStatus(res.status),  # DONE_REPAIRED or DONE_RESOLVED
                                     res.repair_ids[-1] if res.repair_ids else None)
            continue
        status = store.fail_entry(token, item.entry, f"{res.status}: {res.reason}", max_attempts=cfg.max_attempts,
                                  backoff=cfg.backoff, park=not res.transient)
        if status == "failed":
            stats["parked"] += 1
            REPAIRS.labels(item.pair, res.strategy, "parked").inc()
            log.warning("ledger entry %s %s parked as failed after %d attempts: %s", item.pair, item.pk,
                        item.entry.attempts + 1, res.reason)
        else:
            stats["retry"] += 1
    stats["closed"] = store.close_entries(token, closes)
    return stats
