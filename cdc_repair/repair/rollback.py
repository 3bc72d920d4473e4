"""Roll back repairs from their undo records, Seata AT phase-2 style, in batches (see `rollback_batch`).

`rollback(id)`: the id is a repair id (one row write) or a run id (every repair of the run). Repairs are undone
newest first, in chunks of up to 500 per local transaction in the row's database (a row appears at most once
per chunk, so a key repaired twice is undone newest first). The dirty check per repair:
- current == after-image → restore the before-image, write an undo record for the rollback itself (its own
  `rb-…` id, strategy `rollback`, grouped under one rollback run id: rolling *that* back re-applies the
  repairs), mark the original `log_status = 1`;
- current == before-image → already undone: only mark it;
- anything else → **dirty**: nothing is written for it, the three images are reported, repair_log says `dirty`.
  Without `skip_dirty` the rollback stops there (the newer repairs before it stay undone, the older ones are
  `not_run`); with `skip_dirty` every other repair is undone (older repairs of the same row are left
  `not_run`), and the dirty ones are listed. `force=True` restores the before-image anyway (logged, `forced`).
After each chunk the state DB gets its records in a few statements: repair_log statuses, the rollbacks' own
repair_log rows, and the ledger entries of the undone keys reopened (`open`: the difference is back, so
`repair --execute` and `status` see it again). `dry_run` reports the decisions without writing. A repair
missing from repair_log is found in the undo logs: by the run id its undo records carry (`context`), or, for
a repair id, by searching every configured pair's undo_log.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import Settings, TableRef
from cdc_repair.db import mysql
from cdc_repair.errors import CdcRepairError
from cdc_repair.metrics import ROLLBACKS
from cdc_repair.model.ledger import utcnow
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.executor import RowServer
from cdc_repair.repair.rollback_batch import CHUNK, Undo, undo_chunk
from cdc_repair.repair.runs import unlogged_repairs
from cdc_repair.repair.store import LogRow, StateStore, new_id

log = logging.getLogger(__name__)

# outcomes
UNDONE = "undone"
SKIPPED = "skipped"  # already undone, or the repair changed nothing
DIRTY = "dirty"
FORCED = "forced"
WOULD_UNDO = "would_undo"  # dry run
MISSING = "missing"  # no undo record found
NOT_RUN = "not_run"  # after a dirty stop


@dataclass
class RollbackItem:
    repair_id: str
    pair: str | None
    table: str | None
    pk: str | None
    outcome: str
    detail: str = ""
    rollback_id: str | None = None
    images: dict[str, Any] = field(default_factory=dict)  # before / after / current (dirty and dry runs)
    columns: list[str] = field(default_factory=list)
    sql: str | None = None  # the restore statement that ran

    def to_json(self) -> dict[str, Any]:
        return {"repair_id": self.repair_id, "pair": self.pair, "table": self.table, "pk": self.pk,
                "outcome": self.outcome, "detail": self.detail, "rollback_id": self.rollback_id,
                "columns": self.columns, "images": self.images, "sql": self.sql}


@dataclass
class RollbackReport:
    target_id: str
    dry_run: bool
    force: bool
    items: list[RollbackItem] = field(default_factory=list)
    skip_dirty: bool = False

    @property
    def dirty(self) -> list[RollbackItem]:
        return [i for i in self.items if i.outcome == DIRTY]

    @property
    def exit_code(self) -> int:
        if any(i.outcome == MISSING for i in self.items) and not any(i.outcome != MISSING for i in self.items):
            return 1
        return 2 if self.dirty else 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.target_id, "dry_run": self.dry_run, "force": self.force, "skip_dirty": self.skip_dirty,
                "dirty": [i.repair_id for i in self.dirty], "items": [i.to_json() for i in self.items]}


@dataclass(frozen=True, slots=True)
class _Located:
    repair_id: str
    pair: str | None
    server: str
    schema: str
    table: str | None
    pk: str | None
    side: str = "target"


def rollback(settings: Settings, store: StateStore, target_id: str, *, dry_run: bool = False,
             force: bool = False, skip_dirty: bool = False, chunk: int = CHUNK,
             threads: int | None = None) -> RollbackReport:
    """Undo the repair (or run) `target_id` newest first; see the module docstring. `chunk` repairs per
    transaction on `threads` writers (default repair.threads); `chunk=1, threads=1` is the old one-by-one way."""
    report = RollbackReport(target_id, dry_run, force, skip_dirty=skip_dirty)
    located = _locate(settings, store, target_id, _logged(settings, store, target_id, dry_run=dry_run))
    if not located:
        report.items.append(RollbackItem(target_id, None, None, None, MISSING,
                                         f"no repair or run with id '{target_id}' in repair_log or any undo_log "
                                         f"(see `cdc-repair status` or repair_log for ids)"))
        return report
    runner = _Runner(settings, store, report, skip_dirty=skip_dirty, threads=threads)
    runner.run(_chunks(list(reversed(located)), max(1, chunk)))
    return report


def _logged(settings: Settings, store: StateStore, target_id: str, *, dry_run: bool) -> list[LogRow]:
    """The repair_log rows of `target_id`, completed first from the undo log when it names a run that may have
    died before logging everything it applied (not finished; see `runs.backfill_repair_log`)."""
    logged = store.repairs(target_id, with_sql=False)
    if any(r.repair_id == target_id for r in logged) or store.run_status(target_id) == "finished":
        return logged
    missing = unlogged_repairs(settings, store, target_id, known={r.repair_id for r in logged})
    if not missing:
        return logged
    if dry_run:  # shown, not written
        return logged + [LogRow(id=0, created_at=utcnow(), **r) for r in missing]
    for start in range(0, len(missing), 500):
        store.log_repairs(missing[start:start + 500])
    log.warning("run %s had %d applied repairs missing from repair_log: added from the undo log", target_id,
                len(missing))
    return store.repairs(target_id, with_sql=False)


@dataclass
class _Flight:
    """One chunk submitted to a writer thread (or blocked entirely by dirty rows)."""

    runnable: list[_Located]
    blocked: list[_Located]
    undos: list[Undo]
    rows: set[tuple[str | None, str | None]]
    future: Future[bool] | None


class _Runner:
    """Runs chunks on `repair.threads` writer threads (own connections), keeping the report newest first. Chunks
    in flight together never share a row (a row's repairs are undone strictly newest first); the main thread
    writes each finished chunk's state records while the writers run the next chunks (one chunk waits queued,
    so a writer never idles while the main thread writes)."""

    def __init__(self, settings: Settings, store: StateStore, report: RollbackReport, *, skip_dirty: bool,
                 threads: int | None = None) -> None:
        self.settings, self.store, self.report, self.skip_dirty = settings, store, report, skip_dirty
        self.rollback_run = new_id("rbrun")
        self.threads = max(1, threads or settings.repair.threads)
        self.dirty_rows: set[tuple[str | None, str | None]] = set()
        self.stopped = False
        self._local = threading.local()
        self._servers: list[RowServer] = []
        self._lock = threading.Lock()

    def run(self, chunks: Iterator[list[_Located]]) -> None:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rollback")
        pending: deque[_Flight] = deque()
        try:
            for chunk in chunks:
                rows = {(loc.table, loc.pk) for loc in chunk}
                while pending and (len(pending) > self.threads or any(rows & f.rows for f in pending)):
                    self._consume(pending.popleft())
                if self.stopped:
                    self._report(chunk, [], [Undo(loc.repair_id, NOT_RUN, "not attempted: an earlier (newer) "
                                                                          "rollback was dirty") for loc in chunk])
                    continue
                runnable = [loc for loc in chunk if (loc.table, loc.pk) not in self.dirty_rows]
                blocked = [loc for loc in chunk if (loc.table, loc.pk) in self.dirty_rows]
                undos = [Undo(loc.repair_id) for loc in runnable]
                future = pool.submit(self._undo, runnable, undos) if runnable else None
                pending.append(_Flight(runnable, blocked, undos, rows, future))
            while pending:
                self._consume(pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for server in self._servers:
                server.close()

    def _undo(self, runnable: list[_Located], undos: list[Undo]) -> bool:
        """On a writer thread: one chunk, on this thread's own connection to the chunk's server."""
        first = runnable[0]
        servers: dict[str, RowServer] | None = getattr(self._local, "servers", None)
        if servers is None:
            servers = self._local.servers = {}
        if first.server not in servers:
            servers[first.server] = RowServer(first.server, self.settings.server_dsn(first.server))
            with self._lock:
                self._servers.append(servers[first.server])
        server = servers[first.server]
        try:
            return undo_chunk(server, first.schema, undos, rollback_run=self.rollback_run,
                              dry_run=self.report.dry_run, force=self.report.force,
                              stop_at_dirty=not self.skip_dirty)
        except CdcRepairError:
            server.reset()
            raise
        except Exception as exc:
            server.reset()
            raise mysql.classify(exc, f"rollback of {first.repair_id} and {len(undos) - 1} more") from exc

    def _consume(self, flight: _Flight) -> None:
        if flight.future is not None and flight.future.result():
            self.stopped = True
        blocked = [Undo(loc.repair_id, NOT_RUN, "not attempted: a newer repair of this row is dirty")
                   for loc in flight.blocked]
        items = self._report(flight.runnable + flight.blocked, flight.runnable, flight.undos + blocked)
        self.dirty_rows |= {(i.table, i.pk) for i in items if i.outcome == DIRTY}

    def _report(self, located: list[_Located], runnable: list[_Located], undos: list[Undo]) -> list[RollbackItem]:
        items = [_item(loc, u) for loc, u in zip(located, undos, strict=True)]
        self.report.items += items
        for item in items:
            ROLLBACKS.labels(item.outcome).inc()
            if item.outcome == DIRTY:
                log.error("rollback of %s refused: %s %s is dirty: %s (the three images are in the report)",
                          item.repair_id, item.table, item.pk, item.detail)
            elif item.outcome == FORCED:
                log.warning("rollback of %s FORCED on a dirty row %s %s: before-image restored over it (%s)",
                            item.repair_id, item.table, item.pk, item.detail.split(":")[0])
        if not self.report.dry_run and runnable:
            _record(self.store, self.rollback_run, runnable, items)
        return items


def _chunks(newest_first: list[_Located], size: int) -> Iterator[list[_Located]]:
    """Consecutive repairs of one database, at most CHUNK, no row twice (a row's repairs stay in order)."""
    chunk: list[_Located] = []
    rows: set[tuple[str | None, str | None]] = set()
    for loc in newest_first:
        row = (loc.table, loc.pk)
        if chunk and (len(chunk) >= size or row in rows or (loc.server, loc.schema) !=
                      (chunk[0].server, chunk[0].schema)):
            yield chunk
            chunk, rows = [], set()
        chunk.append(loc)
        rows.add(row)
    if chunk:
        yield chunk


def _item(loc: _Located, u: Undo) -> RollbackItem:
    rec = u.record
    return RollbackItem(loc.repair_id, loc.pair, rec.table if rec else loc.table, rec.pk if rec else loc.pk,
                        u.outcome, u.detail, u.rollback_id, u.images, list(rec.columns) if rec else [], u.sql)


def _locate(settings: Settings, store: StateStore, target_id: str, logged: list[LogRow]) -> list[_Located]:
    """Where each repair of `target_id` lives (oldest first): from repair_log, else by searching undo_logs."""
    pairs = {p.name: p for p in settings.pairs}
    out = []
    for row in logged:
        if row.status == "failed":
            continue  # the write was rolled back by the database: nothing to undo
        pair = pairs.get(row.pair)
        if pair is None:
            raise CdcRepairError(f"repair {row.repair_id} belongs to pair '{row.pair}', which is not in the config "
                                 f"(add the pair back to roll it back)")
        ref: TableRef = pair.target if row.side == "target" else pair.source
        out.append(_Located(row.repair_id, row.pair, ref.server, ref.schema_name, ref.table, row.pk, row.side))
    if out:
        return out
    for pair in settings.pairs:  # the repairer may have died before writing repair_log
        for side, ref in (("target", pair.target), ("source", pair.source)):
            server = RowServer(ref.server, settings.server_dsn(ref.server))
            try:
                rows = mysql.fetch_dicts(server.conn, rsql.select_undo(ref.schema_name, target_id))
            except Exception:
                rows = []
            finally:
                server.close()
            for r in rows:
                if r["table_name"] == ref.table:
                    return [_Located(target_id, pair.name, ref.server, ref.schema_name, ref.table, str(r["pk"]),
                                     side)]
    return []


def _record(store: StateStore, rollback_run: str, located: list[_Located], items: list[RollbackItem]) -> None:
    """repair_log (originals' status, the rollbacks' own rows) and the ledger (entries reopened), per chunk."""
    side = {loc.repair_id: loc.side for loc in located}
    undone = [i for i in items if i.outcome in (UNDONE, FORCED)]
    store.set_log_statuses([i.repair_id for i in undone if i.outcome == UNDONE], "rolled_back",
                           f"rolled back (rollback run {rollback_run})")
    store.set_log_statuses([i.repair_id for i in undone if i.outcome == FORCED], "rolled_back",
                           f"rolled back FORCED over a dirty row (rollback run {rollback_run})")
    store.set_log_statuses([i.repair_id for i in items if i.outcome == SKIPPED and i.pair is not None],
                           "rolled_back")
    for i in items:
        if i.outcome == DIRTY:
            store.set_log_status(i.repair_id, "dirty", f"rollback refused (needs an operator): {i.detail}")
    store.log_repairs([{"repair_id": i.rollback_id, "run_id": rollback_run, "pair": i.pair or "", "pk": i.pk or "",
                        "strategy": "rollback", "action": "rollback", "side": side.get(i.repair_id, "target"),
                        "status": "forced" if i.outcome == FORCED else "applied",
                        "sql_text": f"-- rollback of {i.repair_id}\n{i.sql or ''}",
                        "error": i.detail if i.outcome == FORCED else None} for i in undone])
    by_pair: dict[str, list[str]] = {}
    for i in undone:
        if i.pair and i.pk and not i.repair_id.startswith("rb-"):  # a rollback of a rollback re-applies a repair
            by_pair.setdefault(i.pair, []).append(i.pk)
    for pair, pks in by_pair.items():
        store.reopen(pair, pks, f"reopened: its repair was rolled back (rollback run {rollback_run})")
