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
from cdc_repair.errors import CdcRepairError, ConfigError


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


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
    from cdc_repair.app.diff import diff

    json_output = ctx.json_output or json_flag
    try:
        with progress_display("rows", enabled=not json_output) as progress:
            doc = diff(source, target, key=_columns(key), columns=_columns(columns), ignore=_columns(ignore) or [],
                       where=where, chunk_size=chunk_size, rules=rules, print_sql=print_sql, on_progress=progress)
    except ConfigError as exc:
        fail("; ".join(exc.problems).replace("pairs[0].", "").replace("servers.", ""))
    except CdcRepairError as exc:
        fail(exc)
    if json_output:
        emit_json(_limited(doc, limit))
    else:
        _print(doc, limit)
    sys.exit(EXIT_DIFFERENCES if doc["differences"] else EXIT_OK)


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
