"""Reading the status document and formatting its values for the page (pure; every value escaped).

What a number means (open inconsistencies, applied repairs, the role) is decided here once, so the page, its
cards and the browser test agree; `page.py` only lays the values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def fmt_number(value: Any, digits: int = 1) -> str:
    """Integers as 1,234; floats with `digits` decimals; anything else as n/a."""
    n = num(value)
    if n is None:
        return "n/a"
    if n == int(n) and abs(n) < 1e15 and not isinstance(value, float):
        return f"{int(n):,}"
    return f"{n:,.{digits}f}"


def fmt_time(value: Any) -> str:
    """Epoch seconds or ISO text → 'YYYY-MM-DD HH:MM:SSZ' (UTC); other values as they are."""
    if value is None or value == "":
        return "—"
    n = num(value)
    if n is not None and n > 1e8:
        return datetime.fromtimestamp(n, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value).replace("T", " ")[:20]


def fmt_duration(value: Any) -> str:
    """Seconds → '45s', '3m 20s', '2h 05m', '3d 04h'; None → n/a."""
    n = num(value)
    if n is None:
        return "n/a"
    n = max(0, round(n))
    if n < 60:
        return f"{n}s"
    if n < 3600:
        return f"{n // 60}m {n % 60:02d}s"
    if n < 86400:
        return f"{n // 3600}h {n % 3600 // 60:02d}m"
    return f"{n // 86400}d {n % 86400 // 3600:02d}h"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def html_table(head: Iterable[str], rows: list[str], empty: str, table_id: str) -> str:
    if not rows:
        return f'<p class="empty" id="{table_id}-empty">{esc(empty)}</p>'
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def html_badge(ok: bool | None, yes: str = "ready", no: str = "not ready") -> str:
    if ok is None:
        return '<span class="badge unknown">unknown</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{esc(yes if ok else no)}</span>'


def max_source_lag(status: Mapping[str, Any]) -> float | None:
    """The largest binlog lag in seconds over all capture sources (None when unknown)."""
    lags = [num(v) for v in as_dict(as_dict(status.get("lag")).get("source_seconds")).values()]
    known = [v for v in lags if v is not None]
    return max(known) if known else None


def unavailable(status: Mapping[str, Any], *sections: str) -> str | None:
    """Why a section of the document could not be read (e.g. the state database is down), or None."""
    found = as_dict(status.get("unavailable"))
    for name in sections:
        if found.get(name):
            return str(found[name])
    return None


def open_total(status: Mapping[str, Any]) -> int | None:
    inc = as_dict(status.get("inconsistencies"))
    if isinstance(inc.get("open_total"), int):
        return int(inc["open_total"])
    if inc.get("unavailable") or unavailable(status, "ledger"):
        return None  # unknown, not 0
    groups = as_list(inc.get("by_pair_kind"))
    return sum(int(num(as_dict(g).get("count")) or 0) for g in groups) if groups else None


def repairs_applied(status: Mapping[str, Any]) -> int | None:
    """Applied repairs: from `repair_counts` (every repair in the log) when present, else the recent list;
    None when the repair log could not be read (the page says n/a and why, not 0)."""
    counts = status.get("repair_counts")
    if unavailable(status, "repair_counts") or ("repair_counts" in status and counts is None):
        return None
    if isinstance(counts, list) and counts:
        return sum(int(num(as_dict(c).get("count")) or 0) for c in counts if as_dict(c).get("status") == "applied")
    return sum(1 for r in as_list(status.get("recent_repairs")) if as_dict(r).get("status") == "applied")


def role_of(status: Mapping[str, Any]) -> str | None:
    """leader | standby | None (no daemon: e.g. the CLI's document)."""
    role = status.get("role")
    if role in ("leader", "standby"):
        return str(role)
    leader = status.get("leader")
    return ("leader" if leader else "standby") if isinstance(leader, bool) else None
