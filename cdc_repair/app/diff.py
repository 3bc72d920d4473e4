"""The `diff` use case: a one-off, read-only compare of two tables named by DSNs (`cdc-repair diff`).

No config file, no Kafka, no state database, nothing written: in-memory settings for one pair named `diff`,
the same full scan as `validate --full` against a store that keeps nothing, and, when asked, the guarded SQL
that would make the target match (planned read-only, as `repair --print`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn, parse_dsn
from cdc_repair.db.sql import Statement, quote_table
from cdc_repair.errors import CdcRepairError

Progress = Callable[[str, int, int], None]  # (label, rows done, rows)

PAIR = "diff"
# Never contacted: the scan runs against ReadOnlyScanStore and nothing consumes Kafka. Settings just require them.
_UNUSED_STATE = "mysql://unused@127.0.0.1:3306/cdc_repair_diff_unused"
_UNUSED_BROKER = "127.0.0.1:9"


def split_table_dsn(text: str, which: str) -> tuple[Dsn, str]:
    """`mysql://u:p@h:3306/db.table[?tls]` → (server DSN, 'db.table'); one clear line when it names no table."""
    try:
        dsn = parse_dsn(text)
    except ValueError as exc:
        raise CdcRepairError(f"{which}: {exc}") from None
    table = dsn.database or ""
    if table.count(".") != 1:
        raise CdcRepairError(f"{which}: the DSN must name a table as /database.table "
                             f"(e.g. mysql://user@host:3306/webook_author.articles), got '/{table}'")
    try:
        quote_table(table)
    except ValueError as exc:
        raise CdcRepairError(f"{which}: {exc}") from None
    return dsn.with_database(None), table


def require_table(dsn: Dsn, table: str, which: str) -> None:
    """Fail with one line naming the side when `table` is not there (the scan's own error speaks of a config)."""
    schema, name = table.split(".", 1)
    conn = mysql.connect(dsn)
    try:
        found = mysql.fetch_all(conn, Statement(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (schema, name)))
    finally:
        conn.close()
    if not found:
        raise CdcRepairError(f"{which}: table {table} does not exist on {dsn.masked()} (or the user cannot see it)")


def primary_key(dsn: Dsn, table: str) -> list[str]:
    """The table's PRIMARY KEY columns, in key order (read from information_schema)."""
    schema, name = table.split(".", 1)
    conn = mysql.connect(dsn)
    try:
        rows = mysql.fetch_all(conn, Statement(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
            "AND INDEX_NAME='PRIMARY' ORDER BY SEQ_IN_INDEX", (schema, name)))
        exists = rows or mysql.fetch_all(conn, Statement(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (schema, name)))
    finally:
        conn.close()
    if not exists:
        raise CdcRepairError(f"table {table} does not exist on {dsn.masked()} (or the user cannot see it)")
    if not rows:
        raise CdcRepairError(f"table {table} has no PRIMARY KEY: name a NOT NULL UNIQUE key with --key COL[,COL]")
    return [str(r[0]) for r in rows]


def diff_settings(source: Dsn, source_table: str, target: Dsn, target_table: str, *, key: list[str],
                  rules: str, columns: list[str] | None, ignore: list[str], chunk_size: int) -> Settings:
    """In-memory settings for one pair named `diff`: the same validation as a config file, nothing on disk."""
    raw: dict[str, Any] = {
        "servers": {"source": {"dsn": source.to_url()}, "target": {"dsn": target.to_url()}},
        "state": {"dsn": _UNUSED_STATE},
        "kafka": {"bootstrap_servers": [_UNUSED_BROKER]},
        "pairs": [{"name": PAIR, "kind": rules, "key": key, "compare": columns, "ignore": ignore,
                   "source": {"server": "source", "table": source_table},
                   "target": {"server": "target", "table": target_table}}],
        # a one-off compare of what is there now: no settle delay, one immediate re-check of each difference
        "validator": {"settle_delay_s": 0, "recheck_delay_s": 0, "rechecks": 1,
                      "full_scan": {"chunk_rows": chunk_size, "max_chunk_rows": max(chunk_size, 50000)}},
    }
    return settings_from_mapping(raw)


def diff(source: str, target: str, *, key: list[str] | None, columns: list[str] | None, ignore: list[str],
         where: str | None, chunk_size: int, rules: str, print_sql: bool,
         on_progress: Progress | None = None) -> dict[str, Any]:
    """Compare SOURCE and TARGET (DSNs ending in /database.table); `key` defaults to the source's PRIMARY KEY.
    The document names both sides with masked DSNs."""
    src_dsn, src_table = split_table_dsn(source, "SOURCE")
    tgt_dsn, tgt_table = split_table_dsn(target, "TARGET")
    require_table(src_dsn, src_table, "SOURCE")
    require_table(tgt_dsn, tgt_table, "TARGET")
    keys = key or primary_key(src_dsn, src_table)
    settings = diff_settings(src_dsn, src_table, tgt_dsn, tgt_table, key=keys, rules=rules, columns=columns,
                             ignore=ignore, chunk_size=chunk_size)
    doc = run_diff(settings, where=where, print_sql=print_sql, on_progress=on_progress)
    doc["source"], doc["target"] = f"{src_dsn.masked()}{src_table}", f"{tgt_dsn.masked()}{tgt_table}"
    return doc


def run_diff(settings: Settings, *, where: str | None = None, print_sql: bool = False,
             on_progress: Progress | None = None) -> dict[str, Any]:
    """The scan (nothing recorded anywhere) and, with `print_sql`, the guarded statements for each difference."""
    from cdc_repair.validate.full_scan import run_full_scan
    from cdc_repair.validate.scan_store import ReadOnlyScanStore

    report = run_full_scan(settings, PAIR, where=where, on_progress=on_progress, store=ReadOnlyScanStore())
    pair = report.pairs[0]
    doc: dict[str, Any] = {"scan": "diff", "rows": pair.rows, "chunks": pair.chunks, "seconds": round(pair.seconds, 3),
                           "differences": pair.differences, "diffs": dict(pair.diffs),
                           "found": [{"key": list(v.key), "kind": v.kind, "columns": list(v.columns)}
                                     for v in pair.confirmed]}
    if print_sql:
        doc["sql"] = _guarded_sql(settings, [v.pk for v in pair.confirmed])
    return doc


def _guarded_sql(settings: Settings, pks: list[str]) -> list[str]:
    """`repair --print` for these keys, planned from a fresh read of both rows; nothing is written."""
    from cdc_repair.repair.actions import Strategy
    from cdc_repair.repair.repairer import Repairer, WorkItem

    pair = settings.pair(PAIR)
    repairer = Repairer(settings, None)
    out: list[str] = []
    try:
        for start in range(0, len(pks), 2000):
            items = [WorkItem(PAIR, pk) for pk in pks[start:start + 2000]]
            for res in repairer.dry_run(pair, items, Strategy("forward"), with_sql=True):
                out.extend(res.sql)
    finally:
        repairer.close()
    return out
