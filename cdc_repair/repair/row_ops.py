"""One small executor per repair action type (pure), as Seata has one executor per SQL type.

Each executor knows, for its `Op`, everything that differs between an insert-if-absent, a compare-and-update and
a compare-and-delete: the guarded statement (`repair --print` shows it and `repair --execute` runs it), the row
the write leaves if the server stores the values as given (the undo record's after-image, checked against the
re-read row before COMMIT), whether there is an after-image to re-read, and the statement in words for
`repair_log.sql_text`. Callers look the executor up by `action.op` (`executor_for`) instead of branching on the
op in each place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cdc_repair.db.sql import Statement
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import Op, RepairAction

Row = dict[str, Any]


class OpExecutor:
    """The part of a guarded write that depends on its op (subclasses: one per `Op`)."""

    op: ClassVar[Op]
    leaves_row: ClassVar[bool] = True  # False for a delete: no after-image to re-read

    def statement(self, action: RepairAction) -> Statement:
        """The single-row guarded statement (affects 1 row, or 0 when the guard fails)."""
        raise NotImplementedError

    def expected_after(self, action: RepairAction, columns: Sequence[str]) -> Row | None:
        """The row a successful write leaves if the server stores the written values as given. Only a guess,
        checked against the re-read row before COMMIT: it saves rewriting every undo record when it is right."""
        raise NotImplementedError

    def summary(self, action: RepairAction) -> str:
        """What the write did, in SQL words without the values (repair_log.sql_text is for humans; the values are
        in the undo record)."""
        raise NotImplementedError


def _where(action: RepairAction) -> str:
    return " AND ".join(f"{k} = {rsql.literal(v)}" for k, v in action.key)


def _observed(action: RepairAction) -> Mapping[str, Any]:
    if action.observed is None:
        raise ValueError(f"{action.describe()}: an {action.op.value} needs the observed row as its guard")
    return action.observed


class InsertExecutor(OpExecutor):
    """Insert-if-absent: `INSERT … SELECT … FROM DUAL WHERE NOT EXISTS (key)`."""

    op = Op.INSERT

    def statement(self, action: RepairAction) -> Statement:
        return rsql.insert_if_absent(action.table, action.values, action.key_dict)

    def expected_after(self, action: RepairAction, columns: Sequence[str]) -> Row | None:
        values = action.values  # the inserted values, in table order when they are the whole row
        return {c: values[c] for c in columns} if set(values) == set(columns) else dict(values)

    def summary(self, action: RepairAction) -> str:
        return f"INSERT INTO {action.table} ({', '.join(action.values)}) -- if absent: {_where(action)}"


class UpdateExecutor(OpExecutor):
    """Compare-and-update: `UPDATE … SET <written columns> WHERE key AND <every observed column as observed>`."""

    op = Op.UPDATE

    def statement(self, action: RepairAction) -> Statement:
        key = action.key_dict
        values = {c: v for c, v in action.values.items() if c not in key}
        values.update({c: v for c, v in action.values.items() if c in key})  # a re-spelled key: set last
        return rsql.update_guarded(action.table, values, key, _observed(action))

    def expected_after(self, action: RepairAction, columns: Sequence[str]) -> Row | None:
        return {**(action.observed or {}), **action.values}

    def summary(self, action: RepairAction) -> str:
        keys = action.key_dict
        cols = ", ".join(c for c in action.values if c not in keys)
        return f"UPDATE {action.table} SET {cols} WHERE {_where(action)} -- if unchanged since read"


class DeleteExecutor(OpExecutor):
    """Compare-and-delete: `DELETE … WHERE key AND <every observed column as observed>`."""

    op = Op.DELETE
    leaves_row = False

    def statement(self, action: RepairAction) -> Statement:
        return rsql.delete_guarded(action.table, action.key_dict, _observed(action))

    def expected_after(self, action: RepairAction, columns: Sequence[str]) -> Row | None:
        return None

    def summary(self, action: RepairAction) -> str:
        return f"DELETE FROM {action.table} WHERE {_where(action)} -- if unchanged since read"


EXECUTORS: dict[Op, OpExecutor] = {e.op: e for e in (InsertExecutor(), UpdateExecutor(), DeleteExecutor())}


def executor_for(action: RepairAction) -> OpExecutor:
    return EXECUTORS[action.op]


def guarded_statement(action: RepairAction) -> Statement:
    """The single-row guarded statement for an action: what `--print` shows and `--execute` runs."""
    return executor_for(action).statement(action)
