"""`cdc-repair diff SOURCE TARGET`: a one-off, read-only compare of two tables, as pt-table-sync users expect.

SOURCE and TARGET are DSNs naming a table (`mysql://user@h1:3306/webook_author.articles`). It needs no config
file, no Kafka and no state database, and writes nothing anywhere: the same full scan as `validate --full`
(chunk checksums → bisect → row check) runs against a store that keeps nothing, and every difference is printed.
`--print` adds the guarded SQL that would make the target match (planned read-only, as `repair --print`).
Exit 0 when the tables agree, 2 when they differ, 1 on error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cdc_repair.commands.common import EXIT_DIFFERENCES, EXIT_OK, CliContext, emit_json, fail, pass_ctx
from cdc_repair.commands.progress import progress_display
from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn, parse_dsn
from cdc_repair.db.sql import Statement, quote_table
from cdc_repair.errors import CdcRepairError, ConfigError

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


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


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


@click.command("diff")
@click.argument("source")
@click.argument("target")
@click.option("--key", "key", default=None, metavar="COL[,COL]",
              help="Key columns (default: the source table's PRIMARY KEY). Must be unique on both sides.")
@click.option("--columns", default=None, metavar="C1,C2", help="Compare only these columns (default: all).")
@click.option("--ignore", default=None, metavar="C1,C2", help="Do not compare these columns.")
@click.option("--where", default=None, metavar="SQL", help="Compare only rows matching this condition (both sides).")
@click.option("--chunk-size", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Rows per checksum chunk to start with (adapted toward 0.5 s per chunk).")
@click.option("--rules", type=click.Choice(["mirror", "publish"]), default="mirror", show_default=True,
              help="mirror: every compared column equal both ways; publish: the publish contract.")
@click.option("--print", "print_sql", is_flag=True, help="Also print the guarded SQL that would make TARGET match.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Print at most this many differences (the summary counts all).")
@click.option("--json", "json_flag", is_flag=True, help="Machine-readable output on stdout.")
@pass_ctx
def command(ctx: CliContext, source: str, target: str, key: str | None, columns: str | None, ignore: str | None,
            where: str | None, chunk_size: int, rules: str, print_sql: bool, limit: int | None,
            json_flag: bool) -> None:
    """Compare SOURCE and TARGET tables (DSNs ending in /database.table); read-only, no config needed."""
    json_output = ctx.json_output or json_flag
    try:
        src_dsn, src_table = split_table_dsn(source, "SOURCE")
        tgt_dsn, tgt_table = split_table_dsn(target, "TARGET")
        require_table(src_dsn, src_table, "SOURCE")
        require_table(tgt_dsn, tgt_table, "TARGET")
        keys = _columns(key) or primary_key(src_dsn, src_table)
        settings = diff_settings(src_dsn, src_table, tgt_dsn, tgt_table, key=keys, rules=rules,
                                 columns=_columns(columns), ignore=_columns(ignore) or [], chunk_size=chunk_size)
        doc = run_diff(settings, where=where, print_sql=print_sql, progress=not json_output)
    except ConfigError as exc:
        fail("; ".join(exc.problems).replace("pairs[0].", "").replace("servers.", ""))
    except CdcRepairError as exc:
        fail(exc)
    doc["source"], doc["target"] = f"{src_dsn.masked()}{src_table}", f"{tgt_dsn.masked()}{tgt_table}"
    if json_output:
        emit_json(_limited(doc, limit))
    else:
        _print(doc, limit)
    sys.exit(EXIT_DIFFERENCES if doc["differences"] else EXIT_OK)


def run_diff(settings: Settings, *, where: str | None = None, print_sql: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """The scan (nothing recorded anywhere) and, with `print_sql`, the guarded statements for each difference."""
    from cdc_repair.validate.full_scan import run_full_scan
    from cdc_repair.validate.scan_store import ReadOnlyScanStore

    with progress_display("rows", enabled=progress) as on_progress:
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


def _limited(doc: dict[str, Any], limit: int | None) -> dict[str, Any]:
    if limit is None:
        return doc
    return {**doc, "found": doc["found"][:limit], "found_truncated": len(doc["found"]) > limit}


def _print(doc: dict[str, Any], limit: int | None) -> None:
    shown = doc["found"] if limit is None else doc["found"][:limit]
    lead = "-- " if "sql" in doc else ""  # with --print the whole output pipes to the mysql client: list as comments
    for f in shown:
        cols = f" ({', '.join(f['columns'])})" if f["columns"] else ""
        line = f"{f['kind']}\tkey={','.join(str(v) for v in f['key'])}{cols}"
        click.echo(lead + (line.replace("\n", "\\n").replace("\r", "\\r") if lead else line))
    if len(shown) < len(doc["found"]):
        click.echo(f"{lead}… {len(doc['found']) - len(shown)} more (drop --limit, or use --json)")
    if doc.get("sql"):
        click.echo("SET NAMES utf8mb4;")
        for stmt in doc["sql"]:
            click.echo(stmt)
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(doc["diffs"].items()))
    summary = f"{doc['differences']} difference(s): {by_kind}" if doc["differences"] else "no differences"
    click.echo(f"{doc['source']} → {doc['target']}: {doc['rows']:,} rows in {doc['seconds']:.1f}s; {summary}",
               err=True)
