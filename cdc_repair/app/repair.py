"""The `repair` and `rollback` use cases, as `cdc-repair repair` and `cdc-repair rollback` run them.

`run_repair` is a run on demand: it claims (with `--execute`) or reads (dry run, `--print`) the ledger entries
the filters select, plus given keys without an entry, and hands claimed entries to the same claim → execute →
finish loop the daemon's worker runs (`repair.worker.repair_claimed`). A run registers itself with a heartbeat
(`repair/runs.py`) so another run can tell a dead holder's claims from a live one's.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

from cdc_repair.config import PairConfig, Settings
from cdc_repair.errors import CdcRepairError
from cdc_repair.model.keys import pk_string
from cdc_repair.model.ledger import ACTIVE_STATUSES, RESOLVABLE_STATUSES
from cdc_repair.model.ledger import LedgerFilter as Filters
from cdc_repair.preflight import require_unique_keys
from cdc_repair.repair.actions import Strategy
from cdc_repair.repair.repairer import KeyResult, Repairer, RunReport, WorkItem
from cdc_repair.repair.rollback import RollbackReport, rollback
from cdc_repair.repair.runs import FAILED as FAILED_RUN
from cdc_repair.repair.runs import FINISHED as FINISHED_RUN
from cdc_repair.repair.runs import Heartbeat, hand_over, held_reason, take_over_dead
from cdc_repair.repair.store import StateStore, new_id
from cdc_repair.repair.worker import CHUNK_KEYS, repair_claimed

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (pair, keys done, keys)


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


def run_repair(settings: Settings, *, mode: str = "dry-run", strategy: str | None = None,
               pair_names: tuple[str, ...] = (), keys: tuple[str, ...] = (), kinds: tuple[str, ...] = (),
               limit: int = 100000, print_sql: bool = False, take_over: tuple[str, ...] = (),
               on_progress: ProgressFn | None = None) -> RunReport:
    """`mode`: dry-run | print | execute. `print_sql` with mode execute: keep each applied write's statement in
    its result (`--print --execute`); `take_over`: runs whose claims to take over (see repair/runs.py);
    `on_progress(pair, keys done, keys)` after every chunk (the CLI's progress display)."""
    pairs = [settings.pair(n) for n in pair_names] if pair_names else list(settings.pairs)
    if keys and len(pairs) > 1:
        raise CdcRepairError("--key needs --pair when several pairs are configured (e.g. --pair articles --key 42)")
    pks = tuple(parse_key(k, pairs[0] if keys else None) for k in keys)
    require_unique_keys(settings, [p.name for p in pairs])  # every mode: even printed SQL must touch one row a key
    run = _Run(settings, mode, print_sql)
    outcome = FAILED_RUN
    try:
        for pair in pairs:
            run.pair(pair, Filters(pairs=(pair.name,), pks=pks, kinds=kinds), strategy, limit, take_over,
                     on_progress)
        outcome = FINISHED_RUN
    finally:
        run.close(outcome)
    return run.report


class _Run:
    """One `run_repair`: its id, claim token, heartbeat (execute only), repairer and report."""

    def __init__(self, settings: Settings, mode: str, print_sql: bool) -> None:
        self.settings = settings
        self.mode = mode
        self.store = StateStore(settings.state.dsn)
        run_id = new_id("run")
        self.report = RunReport(run_id, mode)
        from cdc_repair.source.history import BinlogHistory  # compensation's binlog reader (loads the binlog library)

        self.repairer = Repairer(settings, self.store, run_id=run_id, history=BinlogHistory(settings))
        self.repairer.record_sql = print_sql and mode == "execute"
        self.token = f"cli:{run_id}:{uuid.uuid4().hex[:6]}"
        self.heartbeat = Heartbeat(settings.state.dsn, run_id, self.token, "cli", settings.repair).start() \
            if mode == "execute" else None

    def close(self, outcome: str) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop(outcome)
        self.repairer.close()
        self.store.close()

    def pair(self, pair: PairConfig, filters: Filters, strategy: str | None, limit: int,
             take_over: tuple[str, ...], on_progress: ProgressFn | None) -> None:
        strat = self.repairer.strategy_for(pair, strategy)
        if self.mode == "execute":
            items, live_reasons = self._claim(pair, filters, limit, take_over)
        else:
            entries = self.store.entries(filters, ACTIVE_STATUSES, limit=limit)
            items, live_reasons = [WorkItem(pair.name, e.pk, e) for e in entries], {}
        held = set(live_reasons) if not filters.pks else set()
        if filters.pks:
            known = ({e.pk for e in self.store.entries(filters, ACTIVE_STATUSES)}
                     if self.mode == "execute" else set())
            held = known - {i.pk for i in items}
            have = {i.pk for i in items} | held
            items += [WorkItem(pair.name, pk) for pk in filters.pks if pk not in have]
        for pk in sorted(held):
            self.report.results.append(KeyResult(pair.name, pk, "?", "left", strat.value, reason=live_reasons.get(
                pk, "claimed by another worker right now; try again later")))
        progress = (lambda done: on_progress(pair.name, done, len(items))) if on_progress is not None else None
        if self.mode == "execute":
            done = repair_claimed(self.repairer, self.store, self.token, pair, items, strat, on_chunk=progress)
            self.report.results.extend(done.results)
        else:
            self._dry_run(pair, items, strat, progress)

    def _claim(self, pair: PairConfig, filters: Filters, limit: int,
               take_over: tuple[str, ...]) -> tuple[list[WorkItem], dict[str, str]]:
        """Claim the selected entries (taking over dead runs' claims); entries a live run holds are left, each
        with the reason."""
        cfg = self.settings.repair
        handover = hand_over(self.store, filters, self.token, cfg, take_over)
        take_over_dead(self.settings, self.store, handover, self.report.run_id)
        entries = self.store.claim(self.token, filters, statuses=RESOLVABLE_STATUSES, due=False, limit=limit,
                                   stale_after_s=cfg.claim_timeout_s, dead_after_s=cfg.dead_after_s,
                                   take_over=handover.tokens)
        held: dict[str, str] = {}
        for holder in handover.live:
            log.warning("%d entries of pair '%s' are %s", holder.entries, pair.name, held_reason(holder))
            held.update((e.pk, held_reason(holder)) for e in self.store.claimed(holder.token, filters))
        return [WorkItem(pair.name, e.pk, e) for e in entries], held

    def _dry_run(self, pair: PairConfig, items: list[WorkItem], strategy: Strategy,
                 progress: Callable[[int], None] | None) -> None:
        for start in range(0, len(items), CHUNK_KEYS):  # bounded memory: rows of CHUNK_KEYS keys at a time
            chunk = items[start:start + CHUNK_KEYS]
            self.report.results.extend(self.repairer.dry_run(pair, chunk, strategy, with_sql=self.mode == "print"))
            if progress is not None:
                progress(start + len(chunk))


def run_rollback(settings: Settings, repair_id: str, *, dry_run: bool = False, force: bool = False,
                 skip_dirty: bool = False) -> RollbackReport:
    """Undo a repair or a run (`cdc-repair rollback`), newest first, with the dirty check."""
    store = StateStore(settings.state.dsn)
    try:
        return rollback(settings, store, repair_id, dry_run=dry_run, force=force, skip_dirty=skip_dirty)
    finally:
        store.close()
