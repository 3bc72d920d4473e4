"""`cdc-repair repair`: repair ledger entries (or given keys), like pt-table-sync.

Nothing is written without `--execute`: the default `--dry-run` prints the plan, `--print` the exact guarded
SQL. Exit codes: 0 nothing to do / everything repaired, 1 error, 2 differences found (dry-run/print) or left.
"""

from __future__ import annotations

import click

from cdc_repair.app.repair import run_repair
from cdc_repair.commands.common import CliContext, emit_json, fail, pass_ctx
from cdc_repair.commands.progress import progress_display
from cdc_repair.errors import CdcRepairError
from cdc_repair.repair.repairer import RunReport


@click.command("repair")
@click.option("--dry-run", "dry_run", is_flag=True, help="Print the plan, write nothing (the default).")
@click.option("--print", "print_sql", is_flag=True, help="Print the exact guarded SQL (alone: write nothing; with "
              "--execute: the statements as they run, like pt-table-sync).")
@click.option("--execute", is_flag=True, help="Apply the repairs.")
@click.option("--strategy", type=click.Choice(["forward", "compensate"]), default=None,
              help="forward: make the target match the source; compensate: revert the source (AT). "
                   "Default: the pair's strategy, else repair.strategy.")
@click.option("--pair", "pair_names", multiple=True, help="Only this pair (repeatable).")
@click.option("--key", "keys", multiple=True, help="Only this key (repeatable): 42, 1,2 or a JSON array. "
              "A key without a ledger entry is checked and repaired too.")
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["missing_in_target", "extra_in_target", "different"]), help="Only this kind.")
@click.option("--limit", type=int, default=100000, show_default=True, help="At most this many ledger entries.")
@click.option("--take-over", "take_over", multiple=True, metavar="RUN",
              help="Take over the claims of RUN now (you know it is dead; refused if it runs on this host). "
                   "Runs known dead (process gone, heartbeat stale) are taken over without it.")
@pass_ctx
def command(ctx: CliContext, dry_run: bool, print_sql: bool, execute: bool, strategy: str | None,
            pair_names: tuple[str, ...], keys: tuple[str, ...], kinds: tuple[str, ...], limit: int,
            take_over: tuple[str, ...]) -> None:
    """Repair inconsistencies: guarded writes with undo records (see docs/repair.md)."""
    if dry_run and execute:
        raise click.UsageError("--dry-run and --execute exclude each other (--print --execute prints what it runs)")
    mode = "execute" if execute else "print" if print_sql else "dry-run"
    settings = ctx.settings()
    try:
        with progress_display("keys", enabled=not ctx.json_output) as progress:
            report = run_repair(settings, mode=mode, strategy=strategy, pair_names=pair_names, keys=keys,
                                kinds=kinds, limit=limit, print_sql=print_sql, take_over=take_over,
                                on_progress=progress)
    except CdcRepairError as exc:
        fail(exc)
    _output(ctx, report, print_sql)
    raise SystemExit(report.exit_code)


def _output(ctx: CliContext, report: RunReport, print_sql: bool = False) -> None:
    """The report: JSON, the SQL (--print, alone or with --execute), or one line per key. A run id is shown only
    when the run wrote something: a dry run has nothing that `rollback` could undo."""
    if ctx.json_output:
        doc = report.to_json()
        if not any(r.repair_ids for r in report.results):
            doc["run_id"] = None
        emit_json(doc)
        return
    if print_sql or report.mode == "print":
        click.echo("SET NAMES utf8mb4;")  # the client's default charset would mangle or refuse 4-byte UTF-8
        for r in report.results:
            for stmt in r.sql:
                click.echo(f"-- {r.pair} {r.pk} {r.kind}: {'; '.join(r.actions)}")
                click.echo(stmt)
        if report.mode == "print":
            click.echo(f"-- {len([r for r in report.results if r.sql])} statement(s); run with --execute to apply",
                       err=True)
            return
    else:
        for r in report.results:
            what = "; ".join(r.actions) or "-"
            ids = f" [{', '.join(r.repair_ids)}]" if r.repair_ids else ""
            reason = f" ({r.reason})" if r.reason else ""
            click.echo(f"{r.pair}\t{r.pk}\t{r.kind}\t{r.status}\t{what}{ids}{reason}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(report.summary().items())) or "nothing to do"
    if report.mode != "execute":
        click.echo(f"{summary} (dry run: nothing written; --execute applies)", err=True)
    elif any(r.repair_ids for r in report.results):
        click.echo(f"run {report.run_id}: {summary} (undo: cdc-repair rollback {report.run_id})", err=True)
    else:
        click.echo(f"{summary}: nothing written", err=True)
