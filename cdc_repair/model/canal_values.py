"""Canal value text that is not the column's SQL value (pure): ENUM indexes and SET bitmasks.

Canal (and the capture stage by default) writes an ENUM as its 1-based index (sqlType 4, INTEGER) and a SET as
its bitmask (sqlType -7, BIT); with `capture.enum_set: label` they are the member names (sqlType 12). Whoever
writes or compares an event value against the database (compensation) turns the former back into names here,
using the members listed in the message's `mysqlType` (`enum('a','b')`, `set('x','y')`).
"""

from __future__ import annotations

from collections.abc import Mapping

ENUM_INDEX_SQL_TYPE = 4
SET_BITMASK_SQL_TYPE = -7


def enum_set_members(mysql_type: str) -> tuple[str, tuple[str, ...]] | None:
    """`("enum"|"set", members)` of an `enum('a','it''s')` / `set(...)` type text; None for other types."""
    text = mysql_type.strip()
    head = text[:4].lower()
    kind = "enum" if head == "enum" else "set" if head[:3] == "set" else None
    if kind is None:
        return None
    start = text.find("(")
    if start < 0 or not text.endswith(")"):
        return None
    members: list[str] = []
    body = text[start + 1:-1]
    i = 0
    while i < len(body):
        if body[i] != "'":
            i += 1  # commas and spaces between members
            continue
        j = i + 1
        chars: list[str] = []
        while j < len(body):
            if body[j] == "'" and body[j + 1:j + 2] == "'":
                chars.append("'")
                j += 2
            elif body[j] == "'":
                break
            else:
                chars.append(body[j])
                j += 1
        members.append("".join(chars))
        i = j + 1
    return kind, tuple(members)


def label_value(mysql_type: str | None, sql_type: int | None, value: str | None) -> str | None:
    """`value` as the column's SQL text: an ENUM index or SET bitmask (by its sqlType) becomes member names."""
    if value is None or mysql_type is None or sql_type not in (ENUM_INDEX_SQL_TYPE, SET_BITMASK_SQL_TYPE) \
            or not value.isdigit():
        return value
    parsed = enum_set_members(mysql_type)
    if parsed is None:
        return value
    kind, members = parsed
    number = int(value)
    if kind == "enum":
        return members[number - 1] if sql_type == ENUM_INDEX_SQL_TYPE and 0 < number <= len(members) else \
            ("" if number == 0 else value)
    if sql_type != SET_BITMASK_SQL_TYPE:
        return value
    return ",".join(m for i, m in enumerate(members) if number >> i & 1)


def labelled_row(row: Mapping[str, str | None], mysql_type: Mapping[str, str],
                 sql_type: Mapping[str, int]) -> dict[str, str | None]:
    """A message row with ENUM/SET columns as member names (other columns unchanged)."""
    if not sql_type:
        return dict(row)
    return {c: label_value(mysql_type.get(c), sql_type.get(c), v) for c, v in row.items()}
