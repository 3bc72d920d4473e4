"""Plan the repairs of a set of keys from rows read now (I/O around the pure planners).

Why here and not in the planner: the plan's guarantee depends on the order of the reads. The side to be written
is read first: a writer updates the source before the target (the publish contract), so a source row read
*after* the target row is at least as new as the observed target row, and the guarded write can never move the
target back to an older version (found by test_repair_concurrent). For a compensation the keys' changes are also
re-read from the source's binlog, once for all keys from the oldest recorded coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cdc_repair.config import PairConfig
from cdc_repair.db import mysql
from cdc_repair.errors import BinlogUnavailableError, CdcRepairError
from cdc_repair.model.history import ChangeHistory
from cdc_repair.model.position import BinlogPosition
from cdc_repair.repair.actions import Plan, Strategy
from cdc_repair.repair.compensate import History, Unavailable, plan_compensate, since_position
from cdc_repair.repair.executor import RowServer
from cdc_repair.repair.planner import plan_forward

if TYPE_CHECKING:
    from cdc_repair.repair.repairer import WorkItem


class RowPlanner:
    """Reads both sides of a pair's keys (one IN query per side per 500 keys) and plans each key."""

    def __init__(self, server: Callable[[str], RowServer], history: Callable[[], ChangeHistory]) -> None:
        self._server = server
        self._history = history  # called only when a compensation needs the binlog (raises when none was given)

    def plan(self, pair: PairConfig, items: Sequence[WorkItem], strategy: Strategy) -> list[Plan]:
        """Plans for `items` from rows read now (see the module docstring for the read order)."""
        if not items:
            return []
        src, tgt = self._server(pair.source.server), self._server(pair.target.server)
        keys = [list(i.key) for i in items]
        try:
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
        if strategy is not Strategy.COMPENSATE:
            return [plan_forward(pair, i.key, source_rows.get(i.pk), target_rows.get(i.pk), target_cols)
                    for i in items]
        histories = self._histories(pair, items)
        return [plan_compensate(pair, i.key, source_rows.get(i.pk), target_rows.get(i.pk),
                                i.entry.events if i.entry is not None else [], histories.get(i.pk))
                for i in items]

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
        found = self._history().changes(pair.source.server, pair.source.table, pair.key, [i.key for i in items],
                                        start)
        return {i.pk: found.get(i.key, []) for i in items}
