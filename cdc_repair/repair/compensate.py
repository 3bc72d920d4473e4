"""Plan a compensation (AT style) from the key's changes as re-read from the binlog (pure).

The ledger's `source_event` (the latest source message the validator saw for the key) is only a hint: it
says where in the binlog the key changed (`binlog`, and `first_binlog`, where its run of changes began).
The values come from `history`: the key's changes re-read from the binlog from `first_binlog` on.

1. The message must agree with the binlog: some change at or after the message's coordinates has the
   message's type, row (`data`) and before-values (`old`); else **refused** (a forged or corrupted message).
2. The recorded run is the changes from `first_binlog` through that change; a later change of the source
   the validator has not recorded → **dirty** (an operator decides, as for any source changed since).
3. Walking back from the last recorded change, the state to restore is the newest before-image that is
   consistent with the target (the last state consistent with it): repeated half-done writes are all undone.
   Consecutive changes must chain (after-image = next before-image); no consistent state → **refused**.
4. The write is guarded like every compensation (Seata's dirty check): the live source row must still equal
   the last recorded change's after-image on the columns the revert sets; equal to the target state →
   already reverted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc_repair.config import PairConfig
from cdc_repair.model.history import KeyChange
from cdc_repair.model.keys import pk_string
from cdc_repair.model.oversized import OVERSIZED_MARKER
from cdc_repair.model.position import BinlogPosition
from cdc_repair.model.rules import evaluate
from cdc_repair.model.source_event import SourceEvent
from cdc_repair.model.verdict import OK
from cdc_repair.repair.actions import Op, Plan, RepairAction, Side, Strategy
from cdc_repair.repair.planner import DIRTY, RowEvent, key_pairs, row_event

Row = Mapping[str, Any]
REFUSED = "refused"  # plan kind: compensation refused (untrusted message, binlog gone, nothing safe to revert)
FORWARD_HINT = "repair it with --strategy forward"


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The binlog could not be read for this key (e.g. purged): every compensation of it is refused."""

    reason: str


History = Sequence[KeyChange] | Unavailable | None


def since_position(events: Sequence[SourceEvent]) -> BinlogPosition | None:
    """Where the key's recorded run of changes begins (`first_binlog`, else the message's own `binlog`)."""
    return next((e.since for e in events if e.since is not None), None)


def plan_compensate(pair: PairConfig, key: Sequence[Any], source_row: Row | None, target_row: Row | None,
                    events: Sequence[SourceEvent], history: History) -> Plan:
    """Revert the source row to the last state consistent with the target (see the module docstring)."""
    verdict = evaluate(pair, source_row, target_row, key)
    pk = verdict.pk
    if not verdict.is_mismatch:
        return Plan(pair.name, pk, verdict.kind, None, "consistent" if verdict.kind == OK else "no expectation")

    def refused(why: str) -> Plan:
        return Plan(pair.name, pk, REFUSED, None, f"refused: {why}; {FORWARD_HINT}")

    if isinstance(history, Unavailable):
        return refused(history.reason)
    message = row_event(events, pair, pk)
    since = since_position(events)
    if message is None or history is None or since is None:
        return Plan(pair.name, pk, verdict.kind, None,
                    "no binlog change recorded for this key (the ledger holds no source change with binlog "
                    f"coordinates): compensation needs one; {FORWARD_HINT}")
    changes = [c for c in history if not since.is_after(c.position)]
    own = next((e.binlog.position for e in events if e.binlog is not None), None) or since
    matched = _matching(message, [c for c in changes if not own.is_after(c.position)])
    if matched is None:
        return refused(_disagreement(pk, message, own, [c for c in changes if not own.is_after(c.position)]))
    last = changes.index(matched)
    later_changes = [c for c in changes[last + 1:] if not c.by_repair]  # our own revert is not "changed again"
    if later_changes:
        later = later_changes[0]
        return Plan(pair.name, pk, DIRTY, None,
                    f"dirty: the source changed again after the recorded change (binlog {later.position}, "
                    f"{later.type} of {', '.join(later.changed_columns()) or 'the row'}); an operator decides "
                    f"(or use --strategy forward)")
    state, why = _restore_point(pair, key, target_row, changes[:last + 1])
    if why:
        return refused(why)
    return _revert(pair, key, verdict.kind, source_row, matched, state)


def _matching(message: RowEvent, changes: Sequence[KeyChange]) -> KeyChange | None:
    """The last change whose images are the message's (type, row, before-values of the changed columns): when
    the row went through the same change twice, the later one (an earlier twin would look "changed again")."""
    for change in reversed(changes):
        if change.type == message.type and not _differences(message, change):
            return change
    return None


def _differences(message: RowEvent, change: KeyChange) -> list[str]:
    """Columns on which the message and the binlog change disagree (with both values, for the refusal)."""
    image = change.before if change.type == "DELETE" else change.after
    out = []
    for col in sorted(set(message.data) | set(image or {})):
        if message.data.get(col) == OVERSIZED_MARKER:
            continue  # too large for the message (model/oversized.py): the binlog's value is the one written
        if (image or {}).get(col) != message.data.get(col):
            out.append(f"{col}: message {_short(message.data.get(col))}, binlog {_short((image or {}).get(col))}")
    if change.type == "UPDATE":
        old = message.old or {}
        binlog_old = {c: (change.before or {}).get(c) for c in change.changed_columns()}
        for col in sorted(set(old) | set(binlog_old)):
            if old.get(col) == OVERSIZED_MARKER and col in binlog_old:
                continue
            if old.get(col, _ABSENT) != binlog_old.get(col, _ABSENT):
                out.append(f"old {col}: message {_short(old.get(col, _ABSENT))}, "
                           f"binlog {_short(binlog_old.get(col, _ABSENT))}")
    return out


_ABSENT = "\x00(unchanged)"


def _short(value: Any) -> str:
    if value == _ABSENT:
        return "(unchanged)"
    if value is None:
        return "NULL"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _disagreement(pk: str, message: RowEvent, since: BinlogPosition, changes: Sequence[KeyChange]) -> str:
    if not changes:
        return (f"the binlog holds no change of key {pk} at or after {since}, where the stream message says it "
                f"changed (a forged or corrupted Kafka message?)")
    near = next((c for c in changes if c.type == message.type), changes[0])
    diffs = _differences(message, near) if near.type == message.type else [f"type: message {message.type}, "
                                                                          f"binlog {near.type}"]
    return (f"the stream message for key {pk} disagrees with the binlog at {near.position} ("
            f"{'; '.join(diffs[:4])}): a forged or corrupted Kafka message is never used for values")


def _restore_point(pair: PairConfig, key: Sequence[Any], target_row: Row | None,
                   run: Sequence[KeyChange]) -> tuple[dict[str, str | None] | None, str]:
    """(state to restore, '') walking back from the last change; ('', reason) when there is none."""
    for i in range(len(run) - 1, -1, -1):
        change = run[i]
        if i + 1 < len(run) and change.after != run[i + 1].before:
            return None, (f"the binlog history of the key has a gap before {run[i + 1].position} (a change not "
                          f"in the binlog, e.g. written with sql_log_bin=0)")
        state = change.before
        codec = RowEvent(change.type, dict(change.after or change.before or {}), None, dict(change.mysql_type))
        typed = {c: codec.db_value(c, v) for c, v in state.items()} if state is not None else None
        if not evaluate(pair, typed, target_row, key).is_mismatch:
            return state, ""
    return None, (f"no state of the source row since {run[0].position} is consistent with the target "
                  f"({len(run)} recorded change(s) walked back): nothing safe to revert to")


def _revert(pair: PairConfig, key: Sequence[Any], kind: str, source_row: Row | None, last: KeyChange,
            state: dict[str, str | None] | None) -> Plan:
    """The guarded write taking the source from `last.after` (it must still be there) to `state`."""
    pk = pk_string(key)
    codec = RowEvent(last.type, dict(last.after or state or {}), None, dict(last.mysql_type))
    pairs = key_pairs(pair, key, source_row or state or last.after)
    key_cols = {k for k, _ in pairs}

    def action(op: Op, label: str, values: Mapping[str, Any] | None = None) -> Plan:
        return Plan(pair.name, pk, kind, RepairAction(
            pair=pair.name, pk=pk, key=pairs, side=Side.SOURCE, table=pair.source.table, op=op, label=label,
            values=dict(values or {}), observed=dict(source_row) if source_row is not None else None,
            strategy=Strategy.COMPENSATE))

    def dirty(why: str) -> Plan:
        return Plan(pair.name, pk, DIRTY, None, f"dirty: {why}; an operator decides (or use --strategy forward)")

    done = Plan(pair.name, pk, kind, None, "source already at the state before the recorded changes")
    after = last.after
    if state is None:  # the run began with an INSERT: the row goes
        if source_row is None:
            return done
        if after is not None and codec.matches(source_row, after, [c for c in after if c in source_row]):
            return action(Op.DELETE, "revert_insert")
        return dirty("the source row changed since the recorded change")
    if after is None:  # the last change deleted the row: put the state back
        if source_row is None:
            return action(Op.INSERT, "revert_delete", {c: codec.db_value(c, v) for c, v in state.items()})
        if codec.matches(source_row, state, list(state)):
            return done
        return dirty("a different source row exists with the deleted row's key")
    columns = [c for c in state if c not in key_cols and state[c] != after.get(c)]
    if source_row is None:
        return dirty("the source row was deleted after the change")
    if not columns:
        return Plan(pair.name, pk, kind, None, "the recorded changes set no column: nothing to revert")
    if codec.matches(source_row, after, columns):
        return action(Op.UPDATE, "revert_update", {c: codec.db_value(c, state[c]) for c in columns})
    if codec.matches(source_row, state, columns):
        return done
    return dirty(f"the source changed since the recorded change on {', '.join(columns)}")
