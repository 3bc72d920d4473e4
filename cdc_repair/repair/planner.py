"""Decide the repair for one key from the rows read *now* (pure).

Forward (source is the truth): the verdict comes from the validator's `evaluate()` (the pair's rules, one
implementation), and the action follows from the kind and the matched rule:
- `missing_in_target` → INSERT the source row into the target (every column both tables have, plus the
  rule's `target_values`), guarded as insert-if-absent;
- `different` → UPDATE only the differing columns (source values, or the rule's `target_values`, e.g. a
  private article's `status = 3`), guarded by the whole observed target row;
- `extra_in_target` (orphan, or a rule saying `absent`) → DELETE the target row, compare-and-delete.

Compensate (AT-style) is planned in `repair/compensate.py` from the key's changes re-read from the binlog;
`row_event` here picks the key's row among the ledger entry's source events (`model/source_event.py`, the stream
message, only a hint there). Binary column values are ISO-8859-1 text in FlatMessages (see
`sink/flat_message.py`); `mysqlType` tells which columns are binary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc_repair.config import PairConfig
from cdc_repair.model.canal_values import labelled_row
from cdc_repair.model.keys import pk_string
from cdc_repair.model.rules import evaluate, rule_columns
from cdc_repair.model.source_event import SourceEvent
from cdc_repair.model.verdict import DIFFERENT, EXTRA, MISSING, OK
from cdc_repair.repair.actions import Op, Plan, RepairAction, Side
from cdc_repair.repair.guard import flat_equal

Row = Mapping[str, Any]
DIRTY = "dirty"  # plan kind: compensation refused because the source changed since the event


def plan_forward(pair: PairConfig, key: Sequence[Any], source_row: Row | None, target_row: Row | None,
                 target_columns: Sequence[str]) -> Plan:
    """The forward action for one key (None when the rules are satisfied or have no expectation)."""
    verdict = evaluate(pair, source_row, target_row, key)
    pk = verdict.pk
    if not verdict.is_mismatch:
        return Plan(pair.name, pk, verdict.kind, None, "consistent" if verdict.kind == OK else "no expectation")
    kp = key_pairs(pair, key, source_row or target_row)
    target = pair.target.table

    def action(op: Op, label: str, values: Mapping[str, Any] | None = None) -> Plan:
        return Plan(pair.name, pk, verdict.kind, RepairAction(
            pair=pair.name, pk=pk, key=kp, side=Side.TARGET, table=target, op=op, label=label,
            values=dict(values or {}), observed=dict(target_row) if target_row is not None else None))

    if verdict.kind == EXTRA:
        return action(Op.DELETE, "delete_orphan" if source_row is None else "delete_extra")
    assert source_row is not None
    rule = pair.effective_rules()[verdict.rule] if verdict.rule is not None else None
    fixed = dict(rule.target_values) if rule is not None else {}
    if verdict.kind == MISSING:
        cols = [c for c in target_columns if c in source_row] or list(source_row)
        values = {c: source_row[c] for c in cols}
        values.update({c: v for c, v in fixed.items()})
        values.update(dict(kp))
        return action(Op.INSERT, "copy_missing", values)
    if verdict.kind == DIFFERENT:
        values = {c: (fixed[c] if c in fixed else source_row.get(c)) for c in verdict.columns}
        label = "set_values" if all(c in fixed for c in verdict.columns) else "overwrite"
        return action(Op.UPDATE, label, values)
    raise ValueError(f"pair '{pair.name}': no forward repair for verdict kind {verdict.kind!r}")


def compared_columns(pair: PairConfig, source_row: Row) -> list[str]:
    """Columns the matched rule compares (for reports)."""
    from cdc_repair.model.rules import match_rule

    _, rule = match_rule(pair, source_row)
    return rule_columns(pair, rule, list(source_row)) if rule is not None else []


def key_pairs(pair: PairConfig, key: Sequence[Any], row: Row | None) -> tuple[tuple[str, Any], ...]:
    """(column, value) of the key, typed from the row when there is one (else the given values)."""
    if row is not None and all(k in row for k in pair.key):
        return tuple((k, row[k]) for k in pair.key)
    return tuple(zip(pair.key, key, strict=True))


# ---------------------------------------------------------------- row images of a change (for compensation)


@dataclass(frozen=True, slots=True)
class RowEvent:
    """One row of a binlog change: type, after-image (`data`), changed columns' before-values (`old`)."""

    type: str  # INSERT | UPDATE | DELETE
    data: dict[str, str | None]
    old: dict[str, str | None] | None
    mysql_type: dict[str, str]

    def is_binary(self, column: str) -> bool:
        t = self.mysql_type.get(column, "").lower()
        return "blob" in t or "binary" in t

    def db_value(self, column: str, value: str | None) -> Any:
        """An event string as the value to write (binary columns: ISO-8859-1 text back to bytes)."""
        if value is None:
            return None
        return value.encode("latin-1") if self.is_binary(column) else value

    def matches(self, live: Row, image: Mapping[str, str | None], columns: Sequence[str]) -> bool:
        for c in columns:
            want = image.get(c)
            have = live.get(c)
            if self.is_binary(c) and want is not None and isinstance(have, (bytes, bytearray)):
                if bytes(have) != want.encode("latin-1"):
                    return False
            elif not flat_equal(have, want):
                return False
        return True


def row_event(events: Sequence[SourceEvent], pair: PairConfig, pk: str,
              binary_columns: Iterable[str] = ()) -> RowEvent | None:
    """The event row for `pk` among a ledger entry's source events (`LedgerEntry.events`).
    `binary_columns` (from the live table) mark columns whose event text is ISO-8859-1 for raw bytes, when
    the event carries no `mysqlType` (the validator's ledger slice does not)."""
    chosen: RowEvent | None = None
    for event in events:
        if all(k in event.data for k in pair.key) and pk_string([event.data[k] for k in pair.key]) == pk:
            mysql_type = {c: "blob" for c in binary_columns} | dict(event.mysql_type or {})
            sql_type = event.sql_type or {}  # Canal's ENUM index / SET bitmask → member names
            chosen = RowEvent(event.type, labelled_row(event.data, mysql_type, sql_type),
                              labelled_row(event.old, mysql_type, sql_type) if event.old is not None else None,
                              mysql_type)
    return chosen


