"""DML that arrived as a statement (a Query event) instead of row images: which tables it writes (pure).

Why: with `binlog_format=STATEMENT` (or MIXED, which logs "safe" statements as text) an INSERT/UPDATE/DELETE is in
the binlog only as SQL text; capture cannot turn it into rows, so the tailer must notice it, name the tables and
request a full validation (source/uncapturable.py). Regex based, best effort: when the written tables cannot be
told (multi-table DELETE, a WITH clause), `tables` is empty and `exact` False, and the caller assumes the
statement's default schema is affected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEAD = re.compile(r"^(?:\s|/\*.*?\*/|#[^\n]*\n|--[^\n]*\n)*", re.S)
_KIND = re.compile(r"(INSERT|REPLACE|UPDATE|DELETE|LOAD\s+DATA|LOAD\s+XML|WITH)\b", re.I)
_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_NAME = rf"({_IDENT})(?:\s*\.\s*({_IDENT}))?"
_INSERT = re.compile(r"(?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*(?:INTO\s+)?"
                     + _NAME, re.I)
_UPDATE = re.compile(r"UPDATE\s+(?:(?:LOW_PRIORITY|IGNORE)\s+)*(.*?)\s+SET\s", re.I | re.S)
_DELETE_ONE = re.compile(r"DELETE\s+(?:(?:LOW_PRIORITY|QUICK|IGNORE)\s+)*FROM\s+" + _NAME
                         + r"\s*(?:$|WHERE\b|ORDER\b|LIMIT\b|PARTITION\b|RETURNING\b|AS\b|FOR\b|;)", re.I)
_LOAD = re.compile(r"LOAD\s+(?:DATA|XML)\b.*?\bINTO\s+TABLE\s+" + _NAME, re.I | re.S)
_REF = re.compile(r"(?:^|,|\bJOIN)\s*\(?\s*" + _NAME, re.I)


@dataclass(frozen=True, slots=True)
class StatementDml:
    """`tables`: (schema, table) the statement may write; `exact` False when they could not all be told."""

    kind: str
    tables: tuple[tuple[str, str], ...]
    exact: bool


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def _qualified(first: str, second: str | None, schema: str) -> tuple[str, str]:
    return (_unquote(first), _unquote(second)) if second else (schema, _unquote(first))


def classify_dml(sql: str, schema: str) -> StatementDml | None:
    """The tables a DML statement writes (`schema` is the statement's default database), or None if not DML."""
    text = _LEAD.sub("", sql, count=1)
    m = _KIND.match(text)
    if m is None:
        return None
    kind = re.sub(r"\s+", " ", m[1].upper())
    if kind == "WITH":
        return StatementDml("WITH", (), False)
    if kind in ("INSERT", "REPLACE"):
        found = _INSERT.match(text)
        return StatementDml(kind, (_qualified(found[1], found[2], schema),), True) if found else \
            StatementDml(kind, (), False)
    if kind.startswith("LOAD"):
        found = _LOAD.match(text)
        return StatementDml("LOAD", (_qualified(found[1], found[2], schema),), True) if found else \
            StatementDml("LOAD", (), False)
    if kind == "UPDATE":
        found = _UPDATE.match(text)
        if found is None:
            return StatementDml(kind, (), False)
        refs = tuple(_qualified(r[1], r[2], schema) for r in _REF.finditer(found[1]))
        return StatementDml(kind, refs, bool(refs))
    found = _DELETE_ONE.match(text)
    if found:
        return StatementDml(kind, (_qualified(found[1], found[2], schema),), True)
    return StatementDml(kind, (), False)
