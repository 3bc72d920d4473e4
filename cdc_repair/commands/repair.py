"""`cdc-repair repair`: repair ledger entries (or given keys), like pt-table-sync.

Nothing is written without `--execute`: the default `--dry-run` prints the plan, `--print` the exact guarded
SQL. Exit codes: 0 nothing to do / everything repaired, 1 error, 2 differences found (dry-run/print) or left.
"""

from __future__ import annotations

import json
import logging
import uuid

import click

from cdc_repair.commands.common import CliContext, emit_json, fail, pass_ctx
from cdc_repair.commands.progress import ProgressFn, progress_display
from cdc_repair.config import PairConfig, Settings
from cdc_repair.errors import CdcRepairError
from cdc_repair.model.keys import pk_string
from cdc_repair.model.ledger import ACTIVE_STATUSES, RESOLVABLE_STATUSES
from cdc_repair.model.ledger import LedgerFilter as Filters
from cdc_repair.preflight import require_unique_keys
from cdc_repair.repair.repairer import KeyResult, Repairer, RunReport, WorkItem
from cdc_repair.repair.runs import FAILED as FAILED_RUN
from cdc_repair.repair.runs import FINISHED as FINISHED_RUN
from cdc_repair.repair.runs import Heartbeat, hand_over, held_reason, take_over_dead
from cdc_repair.repair.store import StateStore, new_id

log = logging.getLogger(__name__)


def parse_key(text: str, pair: PairConfig | None) -> str:
    """`42`, `a,b` or a JSON array → the canonical ledger pk."""
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            raise CdcRepairError(f"--key '{text}' is not a JSON array (write --key 42, --key 1,2 or "
                                 f"--key '[1,2]')") from None
    else:
        values = text.split(",") if pair is None or len(pair.key) > 1 else [text]
    if pair is not None and len(values) != len(pair.key):
        raise CdcRepairError(f"--key '{text}' has {len(values)} values; pair '{pair.name}' has a key of "
                             f"{len(pair.key)} ({', '.join(pair.key)})")
    return pk_string(values)


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


CHUNK_KEYS = 2000


def run_repair(settings: Settings, *, mode: str = "dry-run", strategy: str | None = None,
               pair_names: tuple[str, ...] = (), keys: tuple[str, ...] = (), kinds: tuple[str, ...] = (),
               limit: int = 100000, print_sql: bool = False, take_over: tuple[str, ...] = (),
               on_progress: ProgressFn | None = None) -> RunReport:
    """`print_sql` with mode execute: keep each applied write's statement in its result (`--print --execute`);
    `take_over`: runs whose claims to take over (see repair/runs.py); `on_progress(pair, keys done, keys)`
    after every chunk (the CLI's progress display)."""
    pairs = [settings.pair(n) for n in pair_names] if pair_names else list(settings.pairs)
    if keys and len(pairs) > 1:
        raise CdcRepairError("--key needs --pair when several pairs are configured (e.g. --pair articles --key 42)")
    pks = tuple(parse_key(k, pairs[0] if keys else None) for k in keys)
    require_unique_keys(settings, [p.name for p in pairs])  # every mode: even printed SQL must touch one row a key
    from cdc_repair.source.history import BinlogHistory  # compensation's binlog reader (loads the binlog library)

    store = StateStore(settings.state.dsn)
    run_id = new_id("run")
    report = RunReport(run_id, mode)
    repairer = Repairer(settings, store, run_id=run_id, history=BinlogHistory(settings))
    repairer.record_sql = print_sql and mode == "execute"
    token = f"cli:{run_id}:{uuid.uuid4().hex[:6]}"
    heartbeat = Heartbeat(settings.state.dsn, run_id, token, "cli", settings.repair).start() \
        if mode == "execute" else None
    outcome = FAILED_RUN
    try:
        for pair in pairs:
            filters = Filters(pairs=(pair.name,), pks=pks, kinds=kinds)
            strat = repairer.strategy_for(pair, strategy)
            live_reasons: dict[str, str] = {}
            if mode == "execute":
                handover = hand_over(store, filters, token, settings.repair, take_over)
                take_over_dead(settings, store, handover, run_id)
                entries = store.claim(token, filters, statuses=RESOLVABLE_STATUSES, due=False, limit=limit,
                                      stale_after_s=settings.repair.claim_timeout_s,
                                      dead_after_s=settings.repair.dead_after_s, take_over=handover.tokens)
                for holder in handover.live:
                    log.warning("%d entries of pair '%s' are %s", holder.entries, pair.name, held_reason(holder))
                    live_reasons.update((e.pk, held_reason(holder)) for e in store.claimed(holder.token, filters))
            else:
                entries = store.entries(filters, ACTIVE_STATUSES, limit=limit)
            items = [WorkItem(pair.name, e.pk, e) for e in entries]
            held = set(live_reasons) if not pks else set()
            if pks:
                known = ({e.pk for e in store.entries(filters, ACTIVE_STATUSES)}
                         if mode == "execute" else set())
                held = known - {i.pk for i in items}
                have = {i.pk for i in items} | held
                items += [WorkItem(pair.name, pk) for pk in pks if pk not in have]
            for pk in sorted(held):
                report.results.append(KeyResult(pair.name, pk, "?", "left", strat.value, reason=live_reasons.get(
                    pk, "claimed by another worker right now; try again later")))
            for start in range(0, len(items), CHUNK_KEYS):  # bounded memory: rows of CHUNK_KEYS keys at a time
                chunk = items[start:start + CHUNK_KEYS]
                try:
                    if mode == "execute":
                        results = repairer.execute(pair, chunk, strat)
                        repairer.finish(token, chunk, results)
                    else:
                        results = repairer.dry_run(pair, chunk, strat, with_sql=mode == "print")
                except Exception:
                    if mode == "execute":  # give back what this run claimed and did not finish
                        store.release(token, [i.entry.id for i in items[start:] if i.entry])
                    raise
                report.results.extend(results)
                if on_progress is not None:
                    on_progress(pair.name, start + len(chunk), len(items))
        outcome = FINISHED_RUN
    finally:
        if heartbeat is not None:
            heartbeat.stop(outcome)
        repairer.close()
        store.close()
    return report


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
