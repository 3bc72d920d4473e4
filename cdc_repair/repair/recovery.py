"""Link repairs of a run that died between the row commit and the ledger update (I/O).

A key found consistent in the first round whose row has an undo record newer than its ledger entry was repaired
by a run that stopped before closing the entry: the entry is closed `repaired` with that repair id, and the
missing repair_log row is added. Nothing is lost or done twice (docs/repair.md, "Crash safety").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cdc_repair.config import PairConfig
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, placeholders, quote_columns
from cdc_repair.repair.actions import Side
from cdc_repair.repair.executor import RowServer
from cdc_repair.repair.results import DONE_REPAIRED, KeyResult
from cdc_repair.repair.store import StateStore
from cdc_repair.repair.undo_log import undo_table

if TYPE_CHECKING:
    from cdc_repair.repair.repairer import WorkItem

UNDO_COLUMNS = ("xid", "pk", "sql_type", "strategy", "log_created")


def recover(pair: PairConfig, items: Sequence[WorkItem], results: dict[str, KeyResult],
            server: Callable[[str], RowServer], store: StateStore | None, run_id: str) -> None:
    """Close consistent keys whose row carries a newer undo record as `repaired` by it (see module docstring)."""
    with_entries = [i for i in items if i.entry is not None]
    if not with_entries:
        return
    found = _newest_undo(pair, with_entries, server)
    logged = []
    for item in with_entries:
        hit = found.get(item.pk)
        assert item.entry is not None
        if hit is None or hit["log_created"] < item.entry.first_seen:
            continue
        res = results[item.pk]
        res.status = DONE_REPAIRED
        res.repair_ids.append(str(hit["xid"]))
        res.reason = "repair applied by an earlier run that stopped before updating the ledger"
        logged.append({"repair_id": hit["xid"], "run_id": run_id, "pair": pair.name, "pk": item.pk,
                       "strategy": hit["strategy"], "action": str(hit["sql_type"]).lower(),
                       "side": hit["side"].value, "status": "applied", "sql_text": None,
                       "error": "recovered from the undo log after an interrupted run"})
    if logged and store is not None:
        store.log_repairs(logged)


def _newest_undo(pair: PairConfig, items: Sequence[WorkItem],
                 server: Callable[[str], RowServer]) -> dict[str, dict[str, Any]]:
    """The newest normal undo record of each key since the oldest entry was first seen, on either side."""
    since = min(i.entry.first_seen for i in items if i.entry is not None)
    pks = [i.pk for i in items]
    found: dict[str, dict[str, Any]] = {}
    for side, ref in ((Side.TARGET, pair.target), (Side.SOURCE, pair.source)):
        stmt = Statement(
            f"SELECT {quote_columns(UNDO_COLUMNS)} FROM {undo_table(ref.schema_name)} WHERE `table_name` = %s "
            f"AND `log_status` = 0 AND `pk` IN ({placeholders(len(pks))}) AND `log_created` >= %s "
            f"ORDER BY `log_created`", (ref.table, *pks, since))
        try:
            rows = mysql.fetch_dicts(server(ref.server).conn, stmt)
        except Exception as exc:
            if "1146" not in str(mysql.classify(exc, "undo lookup")):  # no undo_log there yet: nothing to find
                raise mysql.classify(exc, f"pair '{pair.name}': looking up undo records") from exc
            continue
        for row in rows:
            found[str(row["pk"])] = {**row, "side": side}
    return found
