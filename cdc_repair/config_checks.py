"""Cross-field checks of a config, on the raw mapping: unknown servers, duplicate pair names, column names,
cron expressions.

They read the raw mapping, not the typed `Settings`, so they run even when other parts of the file are broken:
`check-config` reports every problem at once, each as `path: what is wrong (the fix)`.
"""

from __future__ import annotations

from typing import Any

from cdc_repair.db.sql import is_identifier


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def semantic_problems(raw: dict[str, Any]) -> list[str]:
    servers = set(_dict(raw.get("servers")))
    problems: list[str] = []
    problems += _identifier_problems(raw)
    for i, cap in enumerate(_list(raw.get("capture"))):
        srv = _dict(cap).get("server")
        if isinstance(srv, str) and srv not in servers:
            problems.append(f"capture[{i}].server: unknown server '{srv}' (servers: {', '.join(sorted(servers))})")
    names: set[str] = set()
    for i, pair in enumerate(_list(raw.get("pairs"))):
        pair = _dict(pair)
        name = pair.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append(f"pairs[{i}].name: duplicate pair name '{name}' (names must be unique)")
            names.add(name)
        for side in ("source", "target"):
            srv = _dict(pair.get(side)).get("server")
            if isinstance(srv, str) and srv not in servers:
                problems.append(f"pairs[{i}].{side}.server: unknown server '{srv}' "
                                f"(servers: {', '.join(sorted(servers))})")
        problems += _pair_column_problems(i, pair)
    problems += _cron_problems(_dict(raw.get("scheduler")))
    return problems


def _identifier_problems(raw: dict[str, Any]) -> list[str]:
    problems = []
    for i, pair in enumerate(_list(raw.get("pairs"))):
        pair = _dict(pair)
        for side in ("source", "target"):
            table = _dict(pair.get(side)).get("table")
            if isinstance(table, str):
                parts = table.split(".")
                if len(parts) != 2 or not all(is_identifier(p) for p in parts):
                    problems.append(f"pairs[{i}].{side}.table: '{table}' is not schema.table "
                                    f"(write it as database.table, letters/digits/_ only)")
        for field in ("key", "columns", "compare", "ignore"):
            for j, col in enumerate(_list(pair.get(field))):
                if not isinstance(col, str) or not is_identifier(col):
                    problems.append(f"pairs[{i}].{field}[{j}]: '{col}' is not a valid column name")
    return problems


def _pair_column_problems(i: int, pair: dict[str, Any]) -> list[str]:
    declared = [c for c in _list(pair.get("columns")) if isinstance(c, str)]
    if not declared:
        return []
    known = set(declared)
    shown = ", ".join(declared)
    problems = []

    def check(path: str, cols: list[Any]) -> None:
        for col in cols:
            if isinstance(col, str) and col not in known:
                problems.append(f"{path}: unknown column '{col}' (columns: {shown})")

    for field in ("key", "compare", "ignore"):
        check(f"pairs[{i}].{field}", _list(pair.get(field)))
    utime = pair.get("utime_column", "utime")
    if isinstance(utime, str) and utime not in known and "utime_column" in pair:
        problems.append(f"pairs[{i}].utime_column: unknown column '{utime}' (columns: {shown})")
    for j, rule in enumerate(_list(pair.get("rules"))):
        rule = _dict(rule)
        check(f"pairs[{i}].rules[{j}].when", list(_dict(rule.get("when"))))
        check(f"pairs[{i}].rules[{j}].columns", _list(rule.get("columns")))
        check(f"pairs[{i}].rules[{j}].target_values", list(_dict(rule.get("target_values"))))
    return problems


def _cron_problems(scheduler: dict[str, Any]) -> list[str]:
    from apscheduler.triggers.cron import CronTrigger  # only here: parsing cron is APScheduler's job

    problems = []
    for key in ("full_scan_cron", "cleanup_cron"):
        expr = scheduler.get(key)
        if isinstance(expr, str):
            try:
                CronTrigger.from_crontab(expr)
            except ValueError as exc:
                problems.append(f"scheduler.{key}: invalid cron expression '{expr}' ({exc}; "
                                f"use 5 fields: minute hour day month weekday, e.g. '0 3 * * *')")
    return problems
