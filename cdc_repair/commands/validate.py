"""`cdc-repair validate [--full [--resume] [--where SQL] | --since T | --key K…] [--pair P]`.

Finds inconsistencies and records them in the ledger; prints a summary (`--json`: the report on stdout).
Exit 0 when nothing differs, 2 when differences were found (like pt-table-sync), 1 on error.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Any

import click

from cdc_repair.commands.common import EXIT_DIFFERENCES, EXIT_OK, CliContext, emit_json, fail, pass_ctx
from cdc_repair.commands.progress import progress_display
from cdc_repair.errors import CdcRepairError

_RELATIVE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`15m` / `2h` / `1d` / `30s` ago, an ISO date-time (UTC unless it says otherwise), or epoch seconds."""
    now = now or dt.datetime.now(dt.UTC)
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m["n"]) * _UNITS[m["unit"]])
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a time: use 15m, 2h, 1d, an ISO date-time "
                                 f"(2024-05-01T10:00:00) or epoch seconds") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@click.command("validate")
@click.option("--full", "full", is_flag=True, help="Full scan by chunk checksums (the default).")
@click.option("--since", "since", default=None, metavar="T",
              help="Window scan: rows whose utime changed since T (15m, 2h, 1d, ISO time, epoch s).")
@click.option("--key", "keys", multiple=True, metavar="K",
              help="Check these keys only (comma-separated values for a composite key); repeatable.")
@click.option("--pair", "pair_name", default=None, help="Only this pair (default: every pair).")
@click.option("--where", "where", default=None, metavar="SQL", help="Full scan: extra condition on both tables.")
@click.option("--resume", is_flag=True, help="Full scan: continue the last unfinished scan after its last chunk.")
@pass_ctx
def command(ctx: CliContext, full: bool, since: str | None, keys: tuple[str, ...], pair_name: str | None,
            where: str | None, resume: bool) -> None:
    """Find inconsistencies between each pair's source and target tables and record them in the ledger."""
    from cdc_repair.app.validate import validate

    modes = sum(bool(x) for x in (full, since, keys))
    if modes > 1:
        fail("choose one of --full, --since T, --key K (the default is --full)")
    if (where or resume) and (since or keys):
        fail("--where and --resume apply to the full scan only (drop --since/--key)")
    since_at = parse_since(since) if since else None
    settings = ctx.settings()
    try:
        with progress_display("rows", enabled=not ctx.json_output and not (since or keys)) as progress:
            doc = validate(settings, pair_name=pair_name, since=since_at, keys=keys, where=where, resume=resume,
                           on_progress=progress)
    except CdcRepairError as exc:
        fail(exc)
    except KeyboardInterrupt:
        click.echo("interrupted: run again with --resume to continue the full scan", err=True)
        sys.exit(130)
    if ctx.json_output:
        emit_json(doc)
    else:
        _print(doc)
    sys.exit(EXIT_DIFFERENCES if doc["differences"] else EXIT_OK)


def _print(doc: dict[str, Any]) -> None:
    """A pt-table-checksum-like summary, then the differing keys (first 50 per pair)."""
    header = f"{'PAIR':<20} {'ROWS':>10} {'CHUNKS':>7} {'DIRTY':>6} {'MISSING':>8} {'EXTRA':>6} {'DIFFERENT':>9} " \
             f"{'TIME':>8} {'ROWS/S':>9}"
    click.echo(f"validate ({doc['scan']})" + (f" since {doc['since']}" if doc.get("since") else ""))
    click.echo(header)
    for p in doc["pairs"]:
        diffs = p.get("diffs", {})
        rows = p.get("rows", p.get("keys_checked", 0))
        seconds = p.get("seconds", doc.get("seconds", 0))
        rate = p.get("rows_per_s", rows / seconds if seconds else 0)
        click.echo(f"{p['pair']:<20} {rows:>10,} {p.get('chunks', '-'):>7} {p.get('dirty_chunks', '-'):>6} "
                   f"{diffs.get('missing_in_target', 0):>8} {diffs.get('extra_in_target', 0):>6} "
                   f"{diffs.get('different', 0):>9} {seconds:>7.1f}s {rate:>9,.0f}")
        if p.get("skipped"):
            click.echo(f"  skipped: {p['skipped']}")
        for f in p.get("found", [])[:50]:
            cols = f" ({', '.join(f['columns'])})" if f["columns"] else ""
            click.echo(f"  {p['pair']} key={','.join(str(v) for v in f['key'])}: {f['kind']}{cols}")
        if len(p.get("found", [])) > 50:
            click.echo(f"  … {len(p['found']) - 50} more (use --json, or `cdc-repair status`)")
    if doc.get("interrupted"):
        click.echo("scan interrupted: run again with --resume to continue")
    click.echo(f"{doc['differences']} difference(s) recorded in the ledger" if doc["differences"]
               else "no differences")
