"""Guards and the Seata-style three-way dirty check (pure).

Two rows are compared column by column on the columns a write touched (`columns`), never on the whole row:
an `ON UPDATE CURRENT_TIMESTAMP` column, or a timestamp stored at a different precision, would otherwise make
every undo look "dirty" (DESIGN lesson). Values are compared after `canonical()`: BLOB bytes equal the same
text, `Decimal('1.50')` equals `Decimal('1.5')` and `1`, a naive and an aware datetime in UTC are equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

Row = Mapping[str, Any]


def canonical(value: Any) -> Any:
    """A comparable form of a column value (bytes for text, Decimal for numbers, naive UTC datetimes)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, Decimal)):
        return Decimal(value)  # Decimal equality is numeric: 1 == 1.0 == 1.00
    if isinstance(value, float):
        try:
            return Decimal(repr(value))
        except InvalidOperation:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return value


def values_equal(a: Any, b: Any) -> bool:
    return bool(canonical(a) == canonical(b))


def rows_equal(a: Row | None, b: Row | None, columns: Iterable[str] | None = None) -> bool:
    """Equal presence, and equal values on `columns` (default: the union of both rows' columns)."""
    if a is None or b is None:
        return a is None and b is None
    if columns is None and a == b:  # same driver, same types: the common case, compared in C
        return True
    cols = list(columns) if columns is not None else list(dict.fromkeys([*a, *b]))
    if all(type(x) is type(y) and x == y for x, y in ((a.get(c), b.get(c)) for c in cols)):
        return True  # equal values of the same type are equal canonically too (the usual case, no conversion)
    return all(values_equal(a.get(c), b.get(c)) for c in cols)


def differing_columns(a: Row | None, b: Row | None, columns: Iterable[str] | None = None) -> list[str]:
    if a is None or b is None:
        return [] if a is None and b is None else ["(row)"]
    cols = list(columns) if columns is not None else list(dict.fromkeys([*a, *b]))
    return [c for c in cols if not values_equal(a.get(c), b.get(c))]


class UndoDecision(StrEnum):
    UNDO = "undo"  # current == after-image: restore the before-image
    ALREADY_UNDONE = "already_undone"  # current == before-image: nothing to do
    NO_CHANGE = "no_change"  # before == after: the write changed nothing
    DIRTY = "dirty"  # someone changed the row since: an operator decides (or --force)


def dirty_check(current: Row | None, before: Row | None, after: Row | None, columns: Iterable[str]) -> UndoDecision:
    """Seata `dataValidationAndGoOn`: before == after → no change; current == after → undo;
    current == before → already undone; anything else → dirty. Compared on `columns` only."""
    cols = list(columns)
    if rows_equal(before, after, cols):
        return UndoDecision.NO_CHANGE
    if rows_equal(current, after, cols):
        return UndoDecision.UNDO
    if rows_equal(current, before, cols):
        return UndoDecision.ALREADY_UNDONE
    return UndoDecision.DIRTY


def guard_holds(current: Row | None, observed: Row | None) -> bool:
    """The forward-repair guard: the row still holds exactly what the plan observed (every column, or absent)."""
    return rows_equal(current, observed)


# ---------------------------------------------------------------- FlatMessage values (strings or null)


def flat_text(value: Any) -> str | None:
    """How a column value reads as a FlatMessage string (Canal style), for comparing a live row with an event."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        return text + (f".{value.microsecond:06d}" if value.microsecond else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        total = int(value.total_seconds())
        sign = "-" if total < 0 else ""
        total = abs(total)
        return f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return str(value)


def flat_equal(live: Any, event_value: str | None) -> bool:
    """A live value equals an event's string value (numbers compared as numbers, text as text)."""
    if live is None or event_value is None:
        return live is None and event_value is None
    text = flat_text(live)
    if text == event_value:
        return True
    if isinstance(live, (int, float, Decimal)) and not isinstance(live, bool):
        try:
            return Decimal(str(live)).normalize() == Decimal(event_value).normalize()
        except InvalidOperation:
            return False
    if isinstance(live, dt.datetime):
        return text is not None and event_value.rstrip("0").rstrip(".") == text.rstrip("0").rstrip(".")
    return False

