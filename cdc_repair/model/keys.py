"""The canonical text of a key (the ledger's `pk`): shared by every stage, so it lives below them.

Key values become strings in a JSON array; bytes are decoded with surrogateescape so the text keeps every byte,
which makes two spellings of a key ('KEY10' and 'key10', 'key20 ' and 'key20') two different pks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def pk_string(key: Sequence[Any]) -> str:
    """Canonical JSON array of key values as strings: the ledger's `pk` column."""
    return json.dumps([key_text(v) for v in key], ensure_ascii=False, separators=(",", ":"))


def key_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
