"""Keys as values (pure), shared by every stage, so they live below them: the canonical text of a key (the
ledger's `pk`), its inverse, byte-exact key comparison, and pairing rows read with `key IN (...)` with the keys
asked for.

Key values become strings in a JSON array; bytes are decoded with surrogateescape so the text keeps every byte,
which makes two spellings of a key ('KEY10' and 'key10', 'key20 ' and 'key20') two different pks.
"""

from __future__ import annotations

import decimal
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

RowT = TypeVar("RowT", bound=Mapping[str, Any])


def pk_string(key: Sequence[Any]) -> str:
    """Canonical JSON array of key values as strings: the ledger's `pk` column."""
    return json.dumps([key_text(v) for v in key], ensure_ascii=False, separators=(",", ":"))


def key_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_pk(pk: str) -> tuple[str, ...]:
    """Inverse of `pk_string` (values come back as strings; MySQL converts them on comparison)."""
    values = json.loads(pk)
    if not isinstance(values, list):
        raise ValueError(f"ledger pk {pk!r} is not a JSON array")
    return tuple(str(v) for v in values)


def value_text(value: Any) -> str:
    """A value's text as rules compare scalars: bytes as UTF-8 (surrogateescape), bools and whole numbers as
    integers (2.0 and Decimal('2.00') read "2")."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return str(value.quantize(decimal.Decimal(1)))
    return str(value)


def value_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return value_text(value).encode("utf-8", errors="surrogateescape")


def key_bytes_equal(a: Any, b: Any) -> bool:
    """Key values equal byte for byte (text as UTF-8; numbers by value, as their types may differ per side)."""
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, str | bytes | bytearray) or isinstance(b, str | bytes | bytearray):
        return value_bytes(a if not isinstance(a, bytearray) else bytes(a)) == value_bytes(
            b if not isinstance(b, bytearray) else bytes(b))
    return value_text(a) == value_text(b)


def rows_by_requested_key(key_cols: Sequence[str], wanted: Mapping[str, Sequence[Any]], rows: Iterable[RowT],
                          fetch: Callable[[Sequence[Sequence[Any]]], Iterable[RowT]]) -> dict[str, RowT]:
    """`rows` (read with `key IN (...)` for the keys of `wanted`, a pk_string → key map) by the pk of the
    requested key each one answers.

    Under a case- or accent-insensitive or PAD SPACE collation the server answers 'case1' with the row 'Case1'.
    Pairing rows by Python equality would then call one row missing on one side and extra on the other (and a
    repair would delete it). So an unanswered key that loosely resembles a returned row's key (case, accents,
    trailing spaces) is re-read alone with `fetch([key])`, and the server's own equality decides. Integer keys
    and plainly absent rows (drafts with no online row) cost nothing extra.
    """
    by_pk = {pk_string([row[k] for k in key_cols]): row for row in rows}
    matched = {pk: row for pk, row in by_pk.items() if pk in wanted}
    foldable = [key for pk, key in wanted.items() if pk not in matched and any(map(_foldable, key))]
    if not foldable:
        return matched
    returned = {_loose(row[k] for k in key_cols) for row in by_pk.values()}
    for key in foldable:
        if _loose(key) in returned:
            found = list(fetch([key]))
            if len(found) == 1:
                matched[pk_string(key)] = found[0]
    return matched


_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _foldable(value: Any) -> bool:
    """Text a collation could match to a different spelling (numbers as text, e.g. keys from Kafka, cannot)."""
    if isinstance(value, bytes | bytearray):
        return True
    return isinstance(value, str) and _NUMBER.fullmatch(value) is None


def _loose(values: Iterable[Any]) -> tuple[str, ...]:
    """A key folded the way common collations compare (case, accents, trailing spaces): a superset test only."""
    out = []
    for value in values:
        text = unicodedata.normalize("NFKD", key_text(value).casefold())
        out.append("".join(c for c in text if not unicodedata.combining(c)).rstrip(" "))
    return tuple(out)
