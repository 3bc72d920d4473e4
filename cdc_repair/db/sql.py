"""SQL as values: `Statement` and identifier quoting (pure). Only `db/mysql.py` executes statements."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


@dataclass(frozen=True, slots=True)
class Statement:
    """A SQL text with `%s` placeholders and its parameters, ready for the driver."""

    sql: str
    params: tuple[Any, ...] = ()


def is_identifier(name: str) -> bool:
    """True for a plain MySQL identifier we accept from config (letters, digits, `_`, `$`; ≤ 64 chars)."""
    return bool(_IDENT.match(name))


def quote_ident(name: str) -> str:
    """Backtick-quote one identifier; refuses anything that is not a plain identifier."""
    if not is_identifier(name):
        raise ValueError(f"invalid SQL identifier {name!r}: use letters, digits, '_' or '$' (max 64)")
    return f"`{name}`"


def quote_table(qualified: str) -> str:
    """Quote `schema.table` (or `table`) as `` `schema`.`table` ``."""
    return ".".join(quote_ident(part) for part in qualified.split("."))


def quote_columns(columns: Sequence[str]) -> str:
    return ", ".join(quote_ident(c) for c in columns)


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)
