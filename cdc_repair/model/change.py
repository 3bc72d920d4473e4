"""Row changes (pure values) as the capture stage sees them, before they become FlatMessages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RowValues = dict[str, str | None]
ChangeType = Literal["INSERT", "UPDATE", "DELETE"]


@dataclass(frozen=True, slots=True)
class RowChange:
    """One changed row. Values are Canal strings (or None); `old` holds only the columns an UPDATE changed."""

    database: str
    table: str
    type: ChangeType
    data: RowValues  # after-image (INSERT/UPDATE) or the deleted row (DELETE)
    old: RowValues | None = None
    pk_names: tuple[str, ...] = ()
    es_ms: int = 0  # commit time of the event, epoch ms
    gtid: str = ""

    @property
    def key(self) -> tuple[str | None, ...]:
        return tuple(self.data.get(n) for n in self.pk_names)


def changed_columns(before: RowValues, after: RowValues) -> RowValues:
    """The before-values of the columns whose value differs (Canal's `old`)."""
    return {name: value for name, value in before.items() if after.get(name) != value}
