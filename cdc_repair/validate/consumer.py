"""Incremental validation: a Kafka consumer group reads FlatMessages of both tables of every pair, waits a settle
delay after each change's commit time, checks the keys in batches, re-checks mismatches, records confirmed
ones in the ledger, and commits offsets only when every key of a message has a durable verdict.

In-process API (the daemon runs it as a stage):

    v = IncrementalValidator(settings)          # cheap: connects in run()
    v.run(stop_event)                            # blocks; on stop: commits what is durable, closes, returns
    v.health() -> dict                           # running, assigned partitions, pending keys, last error, counters

Per key (pair, pk), from its latest event:
1. due at `es/1000 + validator.settle_delay_s` (the event's commit time plus the settle delay), and at the latest
   one settle delay after the message was received (a commit time from the future does not hold the key);
2. checked by the key confirmer (validate/confirmer.py: `check()`, one `IN (...)` query per side per
   `batch_max_keys`);
3. ok / not_applicable → done (and an open ledger entry of the key is resolved);
   a mismatch is re-checked every `recheck_delay_s`; it is **confirmed** when it persists across `rechecks`
   re-checks and no newer event of that key arrived meanwhile (a newer event restarts the key at step 1);
4. a confirmed mismatch is written to the ledger (detected_by `stream`) with `source_event`: the latest
   source-side event of the key (a `model.source_event.SourceEvent`: the row, the changed columns' old values,
   the column types; the repairer's compensation needs the before-image), and `event_ts` (commit time, epoch
   s). The event
   also holds `binlog` (the record's `cdc-repair-binlog` header: where compensation re-reads the change, never
   trusting the message's values) and `first_binlog` (where the key's run of changes began).
Records tagged `cdc-repair-origin: repair` (the service's own writes, see source/origin.py) are skipped: a
repair never triggers another repair of itself.

Offsets: per partition the committed offset is the first message that still has a key without a durable
verdict, so a crash or a kill re-delivers (and re-checks) every unfinished key — at-least-once, idempotent.
Malformed messages (not a FlatMessage, or a row without the pair's key columns) go to
`kafka.dead_letter_topic` with the reason in a header, and the consumer keeps going. Database or ledger
errors are logged, counted (`cdc_repair_errors_total{stage="validate"}`), retried with backoff; keys are
kept meanwhile and consumption pauses when more than MAX_PENDING keys wait.

Where each part lives: the keys and their offsets (pure) in validate/stream_keys.py and validate/offsets.py,
the broker calls in validate/stream_kafka.py, check → re-check → ledger in validate/confirmer.py; this module
runs the loop and writes the stream's verdicts (with their source events) to the ledger.
"""


from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.model.verdict import Verdict
from cdc_repair.sink.kafka_consumer import TP, DeadLetters, GroupConsumer, Record
from cdc_repair.stage import Stage
from cdc_repair.state import ledger
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate.confirmer import KeyConfirmer
from cdc_repair.validate.stream_kafka import Consumer, StreamKafka, subscribe
from cdc_repair.validate.stream_keys import PendingKey, StreamKeys

log = logging.getLogger(__name__)

MAX_PENDING = 50_000  # × ~2 KB per pending key (its latest source row image) stays well under 200 MB
COMMIT_EVERY_S = 0.5
LAG_EVERY_S = 5.0  # consumer lag refresh: two small offset requests per interval
MAX_BACKOFF_S = 10.0  # below max_poll_interval_ms: a backoff must not cost the group membership


class Servers:
    """One connection per database server, opened on first use and all closed after a failure (the next
    check reconnects)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conns: dict[str, mysql.Connection] = {}

    def sides(self, pair: PairConfig) -> tuple[mysql.Connection, mysql.Connection]:
        return self._conn(pair.source.server), self._conn(pair.target.server)

    def _conn(self, server: str) -> mysql.Connection:
        conn = self._conns.get(server)
        if conn is None:
            conn = self._conns[server] = mysql.connect(self.settings.server_dsn(server))
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class IncrementalValidator(Stage):
    def __init__(self, settings: Settings, *, group_id: str | None = None, engine: StateEngine | None = None,
                 consumer_factory: Callable[..., Consumer] | None = None,
                 on_confirmed: Callable[[Verdict, float | None], None] | None = None,
                 commit_interval_s: float = COMMIT_EVERY_S) -> None:
        """`on_confirmed(verdict, event_ts)` is called after a confirmed verdict is durable (benchmarks, hooks)."""
        self.settings = settings
        self.commit_interval_s = commit_interval_s
        self.on_confirmed = on_confirmed
        self.group_id = group_id or settings.kafka.consumer.group_id
        self._engine = engine
        self._consumer_factory = consumer_factory or GroupConsumer
        self.keys = StreamKeys(settings)
        self.confirmers = {pair.name: self._confirmer(pair) for pair in settings.pairs}
        self.kafka = self._kafka()
        self.servers = Servers(settings)
        self.assigned: set[TP] = set()
        self._running = False
        self._last_poll = 0.0
        self._last_error: str | None = None
        self._errors_in_row = 0
        self._counts = {"confirmed": 0, "dead_letters": 0, "commits": 0}
        self.last_dead_letter: dict[str, Any] | None = None  # shown on the status page
        self._stop = threading.Event()  # the running stop event (set by run)

    def _kafka(self) -> StreamKafka:
        k = self.settings.kafka
        return StreamKafka(k, DeadLetters(k, k.dead_letter_topic))

    def _confirmer(self, pair: PairConfig) -> KeyConfirmer:
        """The pair's check → re-check → ledger; keys keep the spelling of their message, nothing is kept for a
        report (the ledger is the report)."""
        def done(consistent: list[Verdict], confirmed: list[Verdict]) -> None:
            self._settled(pair.name, consistent, confirmed)

        return KeyConfirmer.from_settings(self.settings, pair, lambda: self.servers.sides(pair),
                                          lambda vs: self._record(pair.name, vs), origin="stream",
                                          source_spelling=False, keep=0, on_done=done)

    # ------------------------------------------------------------ public

    @property
    def items(self) -> StreamKeys:
        """The keys awaiting a durable verdict."""
        return self.keys

    @property
    def stats(self) -> dict[str, int]:
        return {"messages": self.keys.stats["messages"], "rows": self.keys.stats["rows"],
                "keys_checked": sum(c.keys_checked for c in self.confirmers.values()),
                "confirmed": self._counts["confirmed"], "dead_letters": self._counts["dead_letters"],
                "commits": self._counts["commits"], "own_writes": self.keys.stats["own_writes"]}

    def health(self) -> dict[str, Any]:
        return {"running": self._running, "group_id": self.group_id,
                "assigned": sorted(f"{t}:{p}" for t, p in self.assigned),
                "pending_keys": len(self.keys), "rechecking": sum(len(c) for c in self.confirmers.values()),
                "paused": self.kafka.paused,
                "last_poll_age_s": round(time.monotonic() - self._last_poll, 3) if self._last_poll else None,
                "last_error": self._last_error, "consumer_lag_messages": self.kafka.lag_total(),
                "last_dead_letter": self.last_dead_letter, **self.stats}

    def safe_offsets(self, tps: list[TP] | None = None) -> dict[TP, int]:
        """Per partition: the first offset with an unfinished key, else one past the last message seen."""
        return self.keys.offsets.safe(tps)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then commit what is durable and return."""
        self._stop = stop
        engine = self._engine or state_engine(self.settings.state.dsn)
        self.engine = engine
        self.kafka = self._kafka()
        self._running = True
        try:
            if not self.kafka.open(self._subscribe, stop):
                return  # stopped while the broker did not answer
            last_commit = last_lag = time.monotonic()
            while not stop.is_set():
                self._step()
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    self._commit()
                    last_commit = time.monotonic()
                if time.monotonic() - last_lag >= LAG_EVERY_S:
                    self._refresh_lag()
                    last_lag = time.monotonic()
            self._commit()
        finally:
            self._running = False
            self.kafka.close()
            self.servers.close()
            if self._engine is None:
                engine.dispose()

    def _subscribe(self) -> Consumer:
        return subscribe(self.settings, self._consumer_factory, prepare=self._consumer_factory is GroupConsumer,
                         group_id=self.group_id, on_revoked=self._on_revoked, on_assigned=self._on_assigned)

    # ------------------------------------------------------------ loop

    def _step(self) -> None:
        now = time.time()
        nxt = min(d for d in (self.keys.next_due(self._rechecking), self._recheck_due_wall(now)) if d is not None)
        timeout = min(0.2, max(0.0, nxt - now))
        self.kafka.pause(len(self.keys) > MAX_PENDING or self._errors_in_row > 0)
        records = self.kafka.poll(timeout, self.settings.kafka.consumer.max_poll_records)
        self._last_poll = time.monotonic()
        for rec in records:
            self._ingest(rec)
        try:
            self._process(time.time())
            self._errors_in_row = 0
        except Exception as exc:  # one failure: log with stack, count, back off, keep every key
            self._errors_in_row += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            metrics.ERRORS.labels("validate", type(exc).__name__).inc()
            log.exception("validate: checking keys failed (attempt %d); keys are kept and retried",
                          self._errors_in_row)
            self.servers.close()
            self._stop.wait(min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._errors_in_row, 6)))  # a stop ends the wait

    def _recheck_due_wall(self, now: float) -> float:
        """The next re-check (scheduled on the monotonic clock) on the wall clock; in 0.2 s when none."""
        nxt = min((d for c in self.confirmers.values() if (d := c.next_due()) is not None), default=None)
        return now + 0.2 if nxt is None else now + max(0.0, nxt - time.monotonic())

    def _ingest(self, rec: Record) -> None:
        got = self.keys.ingest(rec, time.time())
        for pair, pk in got.restarted:  # a newer change: its re-checks start over
            self.confirmers[pair].forget(pk)
        if got.dead_letter is not None:
            self.last_dead_letter = self.kafka.dead_letter(rec, got.dead_letter, self._stop)
            self._counts["dead_letters"] += 1

    def _process(self, now: float) -> None:
        """First checks of the settled keys, then the re-checks that are due."""
        for pair_name, items in self.keys.due(now, self._rechecking).items():
            self.confirmers[pair_name].check([i.key for i in items])
        for confirmer in self.confirmers.values():
            confirmer.poll()

    def _rechecking(self, item: PendingKey) -> bool:
        return self.confirmers[item.pair.name].pending(item.pk)

    # ------------------------------------------------------------ the ledger

    def _record(self, pair_name: str, verdicts: list[Verdict]) -> None:
        """Make verdicts durable, a confirmed one with its key's latest source event and commit time. On failure
        the keys are no longer scheduled and not released: they start over at a first check."""
        events, ts = self.keys.events(pair_name, [v for v in verdicts if v.is_mismatch])
        ledger.record_verdicts(self.engine, verdicts, "stream", source_events=events, event_ts=ts)

    def _settled(self, pair_name: str, consistent: list[Verdict], confirmed: list[Verdict]) -> None:
        """Verdicts are durable: count them, tell the hook, release their keys' offsets."""
        now = time.time()
        for v in confirmed:
            self._counts["confirmed"] += 1
            item = self.keys.get(pair_name, v.pk)
            ts = item.event_ts if item is not None else None
            if ts is not None:
                metrics.DETECTION_LATENCY.labels(pair_name).observe(max(0.0, now - ts))
            if self.on_confirmed is not None:
                self.on_confirmed(v, ts)
        for v in [*consistent, *confirmed]:
            self.keys.release(pair_name, v.pk)

    # ------------------------------------------------------------ offsets and rebalancing

    def _commit(self, tps: list[TP] | None = None) -> None:
        offsets = self.keys.offsets.to_commit(tps)
        if self.kafka.commit(offsets):
            self.keys.offsets.committed(offsets)
            self._counts["commits"] += 1

    def _refresh_lag(self) -> None:
        tps = sorted(self.assigned)
        self.kafka.refresh_lag(tps, {tp: self.keys.offsets.last_committed(tp) for tp in tps})

    def _on_revoked(self, tps: list[TP]) -> dict[TP, int]:
        """The lost partitions' durable offsets (the consumer commits them before handing the partitions over),
        then forget their keys (the new owner re-reads from there). Runs inside `poll()`: no I/O here."""
        offsets, dropped = self.keys.revoke(tps)
        for item in dropped:
            self.confirmers[item.pair.name].forget(item.pk)
        self.kafka.forget_lag(tps)
        self.assigned.difference_update(tps)
        return offsets

    def _on_assigned(self, tps: list[TP]) -> None:
        self.assigned.update(tps)
        log.info("validate: assigned %s", ", ".join(f"{t}:{p}" for t, p in tps) or "nothing")
