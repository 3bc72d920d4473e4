"""DDL statements → Canal event type and the table they touch (pure, regex based, best effort).

Types as Canal names them: CREATE, ALTER, ERASE (drop table), TRUNCATE, RENAME, CINDEX, DINDEX, and QUERY for
database-level statements. Statements that are not DDL we emit (GRANT, FLUSH, ...) classify as None; the reader
still treats every non-transaction statement as a schema-cache invalidation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENTS = re.compile(r"^(?:\s|/\*.*?\*/|#[^\n]*\n|--[^\n]*\n)*", re.S)
_NAME = (r"(?:`(?P<db>[^`]+)`|(?P<db2>[\w$]+))\s*\.\s*(?:`(?P<t>[^`]+)`|(?P<t2>[\w$]+))"
         r"|(?:`(?P<t3>[^`]+)`|(?P<t4>[\w$]+))")
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("CINDEX", re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+"
                          r"(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+ON\s+" + f"(?:{_NAME})", re.I)),
    ("DINDEX", re.compile(r"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?\S+\s+ON\s+" + f"(?:{_NAME})", re.I)),
    ("CREATE", re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                          + f"(?:{_NAME})", re.I)),
    ("ALTER", re.compile(r"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?" + f"(?:{_NAME})", re.I)),
    ("ERASE", re.compile(r"DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?" + f"(?:{_NAME})", re.I)),
    ("TRUNCATE", re.compile(r"TRUNCATE\s+(?:TABLE\s+)?" + f"(?:{_NAME})", re.I)),
    ("RENAME", re.compile(r"RENAME\s+TABLES?\s+" + f"(?:{_NAME})", re.I)),
]
_DATABASE = re.compile(r"(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
                       r"(?:`(?P<q>[^`]+)`|(?P<n>[\w$]+))", re.I)


@dataclass(frozen=True, slots=True)
class DdlInfo:
    type: str
    database: str
    table: str  # "" for database-level statements


def classify_ddl(sql: str, current_schema: str) -> DdlInfo | None:
    """What a DDL statement does, or None when it is not a DDL we publish."""
    text = _COMMENTS.sub("", sql, count=1)
    for kind, pattern in _RULES:
        m = pattern.match(text)
        if m:
            db = m["db"] or m["db2"] or current_schema
            table = m["t"] or m["t2"] or m["t3"] or m["t4"] or ""
            return DdlInfo(kind, db, table)
    m = _DATABASE.match(text)
    if m:
        return DdlInfo("QUERY", m["q"] or m["n"], "")
    return None
