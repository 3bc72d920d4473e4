"""What a repair does to one row, as a value (pure): the planner builds these, the executor applies them.

An action always carries what was *observed* on the row it writes (`observed`, None = the row was absent).
The executor writes only if the row still holds exactly that (the guard); otherwise the key is re-checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Row = Mapping[str, Any]


class Op(StrEnum):
    """The SQL-level operation: insert-if-absent, compare-and-update, compare-and-delete."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class Side(StrEnum):
    TARGET = "target"
    SOURCE = "source"


class Strategy(StrEnum):
    FORWARD = "forward"  # make the target match the source (source is the truth)
    COMPENSATE = "compensate"  # AT-style: revert the source to the binlog change's before-image
    ROLLBACK = "rollback"  # undo a previous repair from its undo record


@dataclass(frozen=True, slots=True)
class RepairAction:
    """One guarded row write.

    `label` says why in words an operator knows: copy_missing, overwrite, set_values, delete_orphan,
    revert_update, revert_insert, revert_delete. `values` are the columns written (for INSERT the whole row,
    key included). `observed` is the row as read when planning, the guard's expectation.
    """

    pair: str
    pk: str  # canonical ledger key: JSON array of key values as strings
    key: tuple[tuple[str, Any], ...]  # (column, value) of the primary key
    side: Side
    table: str  # schema.table
    op: Op
    label: str
    values: Mapping[str, Any] = field(default_factory=dict)
    observed: Row | None = None
    strategy: Strategy = Strategy.FORWARD

    @property
    def key_dict(self) -> dict[str, Any]:
        return dict(self.key)

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def written_columns(self) -> list[str]:
        """Columns the write sets (what the undo dirty check compares): key + values for INSERT/UPDATE;
        every observed column for DELETE (the whole row goes)."""
        keys = [k for k, _ in self.key]
        cols = list(self.observed or {}) if self.op is Op.DELETE else list(self.values)
        return keys + [c for c in cols if c not in keys]

    def describe(self) -> str:
        keys = self.key_dict  # once, not once per column
        cols = ", ".join(c for c in self.values if c not in keys)
        what = {Op.INSERT: "insert", Op.UPDATE: f"update {cols}", Op.DELETE: "delete"}[self.op]
        return f"{self.label}: {what} {self.side.value} {self.table} {self.pk}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer for one key: an action, or why there is none (already ok, nothing to do, refused)."""

    pair: str
    pk: str
    kind: str  # the verdict kind at planning time ("ok" when consistent)
    action: RepairAction | None
    reason: str = ""
