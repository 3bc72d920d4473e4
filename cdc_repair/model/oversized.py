"""Oversized values: the marker that replaces a value too large to publish or to keep (pure).

Why: one row whose FlatMessage would exceed `kafka.producer.max_request_size` (say a 16 MiB LONGBLOB, ~34 MB as
JSON) must neither stall capture nor be dropped. It is published with its largest values replaced by
`OVERSIZED_MARKER` and the replaced column names listed in the message's extra `oversized` field; consumers that
need the value read the row from the database (the validator always does). The ledger's `source_event` is
bounded the same way (`LEDGER_IMAGE_MAX_BYTES`), so one big row never exceeds the state server's
`max_allowed_packet` and never blocks the verdicts written with it.

Key columns and values of at most 3072 characters (anything an index could hold) are never replaced: they identify
the row. A marked image cannot be written back: compensation refuses it (`has_marker`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson

OVERSIZED_MARKER = "__cdc_repair_oversized__"
OVERSIZED_FIELD = "oversized"  # extra FlatMessage / source_event key: the replaced column names, sorted
LEDGER_IMAGE_MAX_BYTES = 1 << 20  # one ledger source_event, as JSON
# Values this short are never replaced: every indexed value (an InnoDB key is at most 3072 bytes) fits, so the
# columns of any PRIMARY or UNIQUE key a pair is keyed by always stay intact.
NEVER_REPLACED_CHARS = 3072

Image = dict[str, str | None]


def _json_size(value: Any) -> int:
    """Bytes of `value` as UTF-8 JSON (a FlatMessage)."""
    return len(orjson.dumps(value))


def _stored_size(value: Any) -> int:
    """Bytes of `value` as the state database's JSON column stores it (ASCII escapes: a byte 0x80-0xFF of a
    binary value, ISO-8859-1 text, takes 6 bytes as `\\u00XX`)."""
    return len(json.dumps(value))


def shrink_images(images: list[Image | None], excess: int, keep: Collection[str],
                  size: Callable[[Any], int] = _json_size) -> tuple[list[Image | None], list[str]]:
    """Copies of `images` with their largest values (never a `keep` column, never one of at most
    NEVER_REPLACED_CHARS characters) replaced by the marker until the
    JSON they take (measured by `size`) has shrunk by at least `excess` bytes; returns (images, replaced column
    names sorted)."""
    candidates: list[tuple[int, int, str]] = []
    for i, image in enumerate(images):
        for col, value in (image or {}).items():
            if value is not None and len(value) > NEVER_REPLACED_CHARS and col not in keep:
                candidates.append((size(value), i, col))
    candidates.sort(reverse=True)
    out: list[Image | None] = [dict(image) if image is not None else None for image in images]
    marker_size = size(OVERSIZED_MARKER)
    saved = 0
    replaced: set[str] = set()
    for value_size, i, col in candidates:
        if saved >= excess:
            break
        target = out[i]
        assert target is not None
        target[col] = OVERSIZED_MARKER
        saved += value_size - marker_size
        replaced.add(col)
    return out, sorted(replaced)


def bound_event(event: Any, max_bytes: int = LEDGER_IMAGE_MAX_BYTES, keep: Collection[str] = ()) -> Any:
    """A stored source event (`{"type", "data": row, "old": changed, ...}`) within `max_bytes` of JSON: its
    largest row values replaced by the marker and listed under `oversized` (also when capture had already replaced
    them). Anything else is returned as is."""
    if not isinstance(event, Mapping):
        return event
    data, old = event.get("data"), event.get("old")
    if not isinstance(data, dict):
        return event
    total = _stored_size(event)
    if total <= max_bytes:
        marked = has_marker(data, old if isinstance(old, dict) else None)  # marked upstream (capture)
        return {**event, OVERSIZED_FIELD: marked} if marked and OVERSIZED_FIELD not in event else event
    images, replaced = shrink_images([data, old if isinstance(old, dict) else None], total - max_bytes, keep,
                                     _stored_size)
    out = dict(event)
    out["data"] = images[0]
    if isinstance(old, dict):
        out["old"] = images[1]
    out[OVERSIZED_FIELD] = sorted(set(replaced) | set(event.get(OVERSIZED_FIELD) or ()))
    return out


def has_marker(*images: Mapping[str, Any] | None) -> list[str]:
    """Columns of `images` holding the marker (values that were too large to keep), sorted."""
    return sorted({c for image in images if image for c, v in image.items() if v == OVERSIZED_MARKER})
