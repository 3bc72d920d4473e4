"""`cdc-repair rollback ID`: undo a repair (or every repair of a run) from its undo records.

Exit codes: 0 undone / nothing to undo, 1 error or unknown id, 2 a dirty row refused the rollback (with
`--skip-dirty`: every other repair was undone, the dirty ones are listed).
"""

from __future__ import annotations

import click
import orjson

from cdc_repair.commands.common import CliContext, emit_json, fail, pass_ctx
from cdc_repair.errors import CdcRepairError
from cdc_repair.repair.rollback import DIRTY, MISSING, RollbackReport


@click.command("rollback")
@click.argument("repair_id")
@click.option("--dry-run", is_flag=True, help="Show what would be undone; write nothing.")
@click.option("--force", is_flag=True, help="Restore the before-image even over a dirty row (logged).")
@click.option("--skip-dirty", is_flag=True, help="Leave dirty rows as they are and roll back all the others "
              "(the dirty ones are listed; exit 2).")
@pass_ctx
def command(ctx: CliContext, repair_id: str, dry_run: bool, force: bool, skip_dirty: bool) -> None:
    """Undo REPAIR_ID (a repair id or a run id), newest first, with Seata's dirty check."""
    from cdc_repair.app.repair import run_rollback

    settings = ctx.settings()
    try:
        report = run_rollback(settings, repair_id, dry_run=dry_run, force=force, skip_dirty=skip_dirty)
    except CdcRepairError as exc:
        fail(exc)
    if ctx.json_output:
        emit_json(report.to_json())
    else:
        _print(report)
    raise SystemExit(report.exit_code)


def _print(report: RollbackReport) -> None:
    for item in report.items:
        extra = f" → {item.rollback_id}" if item.rollback_id else ""
        click.echo(f"{item.repair_id}\t{item.table or '-'}\t{item.pk or '-'}\t{item.outcome}{extra}\t{item.detail}")
        if item.outcome == DIRTY or (report.dry_run and item.images):
            for name in ("before", "after", "current"):
                shown = orjson.dumps(item.images.get(name), default=str).decode()
                click.echo(f"    {name:8s} {shown}")
    if report.dirty and report.skip_dirty:
        click.echo(f"{len(report.dirty)} dirty row(s) left as they are (changed since the repair): "
                   + ", ".join(f"{i.table} {i.pk} ({i.repair_id})" for i in report.dirty)
                   + ". Check the images, fix them by hand, or roll them back with --force.", err=True)
    elif report.dirty:
        click.echo("rollback stopped at a dirty row: it changed since the repair. Check the three images, fix "
                   "the row by hand, or re-run with --force to restore the before-image anyway.", err=True)
    elif any(i.outcome == MISSING for i in report.items):
        click.echo(f"nothing found to roll back for '{report.target_id}'", err=True)
