"""`cdc-repair status [--json]`: checkpoint and lag, ledger counts, recent repairs, last job runs, leader.

The document is `runtime.status.build_status` (the same one the web server serves at /api/status).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from cdc_repair.commands.common import EXIT_OK, CliContext, emit_json, fail, pass_ctx
from cdc_repair.errors import CdcRepairError


@click.command("status")
@pass_ctx
def command(ctx: CliContext) -> None:
    """Show checkpoint/lag, ledger, recent repairs and jobs, and who is leader."""
    from cdc_repair.app.status import status

    settings = ctx.settings()
    try:
        doc = status(settings)
    except CdcRepairError as exc:
        fail(exc)
    if ctx.json_output:
        emit_json(doc)
    else:
        click.echo(render_text(doc))
    raise SystemExit(EXIT_OK)


def _t(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (int, float)) and value > 1e9:
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def render_text(doc: dict[str, Any]) -> str:
    """Plain text for a terminal (pure)."""
    lines = [f"cdc-repair {doc.get('version')}  generated {_t(doc.get('generated_at'))} UTC"]
    lock = doc.get("leader_lock") or {}
    holder = lock.get("holder_connection_id")
    who = lock.get("holder") or {}
    held_by = (f"held by {who['host']} pid {who['pid']} since {_t(who.get('since'))} UTC (connection {holder})"
               if who.get("host") else f"held (connection {holder})")
    lines.append(f"leader lock '{lock.get('name')}': " + (held_by if holder else "free"))
    lines.append("")
    lines.append("capture:")
    for c in doc.get("checkpoints") or []:
        lag = c.get("lag_seconds")
        lag_s = f"{lag:.1f}s" if isinstance(lag, (int, float)) else "-"
        lines.append(f"  {c.get('source')}: {c.get('binlog_file')}:{c.get('binlog_pos')}  gtid {c.get('gtid_set')}"
                     f"  lag {lag_s}  saved {_t(c.get('updated_at'))}")
    if not doc.get("checkpoints"):
        lines.append("  no checkpoint yet")
    lines.append("")
    led = doc.get("ledger") or {}
    if doc.get("ledger") is None and (doc.get("unavailable") or {}).get("ledger"):
        lines.append(f"ledger: n/a ({doc['unavailable']['ledger']})")  # unknown, not "0 open"
    else:
        lines.append(f"ledger: {led.get('open_total', 0)} open")
    for e in led.get("entries", []):
        lines.append(f"  {e['pair']:<16} {e['kind']:<18} {e['status']:<10} {e['count']}")
    lines.append("")
    lines.append("recent repairs:")
    for r in (doc.get("recent_repairs") or [])[:10]:
        lines.append(f"  {_t(r.get('created_at'))} {r.get('pair')} {r.get('pk')} {r.get('strategy')} "
                     f"{r.get('action')} {r.get('status')}" + (f" ({r['error']})" if r.get("error") else ""))
    if not doc.get("recent_repairs"):
        lines.append("  none")
    lines.append("")
    lines.append("last job runs:")
    for job, r in sorted((doc.get("last_job_runs") or {}).items()):
        lines.append(f"  {job:<20} {r.get('outcome'):<8} {_t(r.get('started_at'))} → {_t(r.get('finished_at'))} "
                     f"on {r.get('host')}  {(r.get('detail') or '')[:80]}")
    if not doc.get("last_job_runs"):
        lines.append("  none")
    for err in doc.get("errors") or []:
        lines.append(f"error: {err}")
    return "\n".join(lines)
