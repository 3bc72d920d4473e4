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
2. checked with `check()` (one `IN (...)` query per side per `batch_max_keys`);
3. ok / not_applicable → done (and an open ledger entry of the key is resolved);
   a mismatch is re-checked every `recheck_delay_s`; it is **confirmed** when it persists across `rechecks`
   re-checks and no newer event of that key arrived meanwhile (a newer event restarts the key at step 1);
4. a confirmed mismatch is written to the ledger (detected_by `stream`) with `source_event`: the latest
   source-side event of the key as `{"type", "database", "table", "es", "data": row, "old": changed columns,
   "mysqlType": column types}`
   (the repairer's compensation needs the before-image), and `event_ts` (commit time, epoch s). The event
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
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.errors import MalformedMessageError, TransientError
from cdc_repair.model.history import coordinates_from_headers, is_own_write
from cdc_repair.model.keys import pk_string
from cdc_repair.model.source_event import SourceEvent
from cdc_repair.model.verdict import Verdict
from cdc_repair.sink.flat_message import FlatMessage, parse_flat_message
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.sink.kafka_consumer import TP, DeadLetters, GroupConsumer, Record
from cdc_repair.sink.partitioning import topic_for
from cdc_repair.state import ledger
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate.check import check
from cdc_repair.validate.confirm import Rechecks

log = logging.getLogger(__name__)

MAX_PENDING = 50_000  # × ~2 KB per pending key (its latest source row image) stays well under 200 MB
COMMIT_EVERY_S = 0.5
LAG_EVERY_S = 5.0  # consumer lag refresh: two small offset requests per interval
MAX_BACKOFF_S = 10.0  # below max_poll_interval_ms: a backoff must not cost the group membership


def settle_due(es: float | None, received: float, settle_s: float) -> float:
    """When a key may be checked: `settle_s` after its commit time, but never later than `settle_s` after the
    message arrived. A commit time from the future (a source clock running ahead, or a bad `es`) would otherwise
    hold the key, and with it its partition's committed offset, until that time."""
    start = received if es is None else min(es, received)
    return start + settle_s


def consumer_lag(ends: dict[TP, int], committed: dict[TP, int | None], beginnings: dict[TP, int]) -> dict[TP, int]:
    """Messages behind the end per partition: end offset minus committed offset (a partition never committed
    counts from its first offset); never negative."""
    out = {}
    for tp, end in ends.items():
        base = committed.get(tp)
        if base is None:
            base = beginnings.get(tp, 0)
        out[tp] = max(0, end - base)
    return out


def open_interruptibly(factory: Callable[[], GroupConsumer], stop: threading.Event) -> GroupConsumer | None:
    """`factory()` (which blocks until the broker answers, up to the client's bootstrap timeout), given up as
    soon as `stop` is set: a stop with the broker down must not wait for the client. A consumer that comes up
    after that is closed in the background. Errors of `factory()` are raised here."""
    done = threading.Event()
    lock = threading.Lock()
    result: dict[str, Any] = {}

    def build() -> None:
        try:
            consumer = factory()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc
            done.set()
            return
        with lock:
            abandoned = result.get("abandoned", False)
            result["consumer"] = consumer
        done.set()
        if abandoned:
            consumer.close()

    threading.Thread(target=build, name="validate-connect", daemon=True).start()
    while not done.wait(0.1):
        if stop.is_set():
            with lock:
                if "consumer" not in result:
                    result["abandoned"] = True
                    log.info("validate: stopped while connecting to the Kafka broker")
                    return None
            break
    if "error" in result:
        raise result["error"]
    consumer: GroupConsumer = result["consumer"]
    return consumer


@dataclass
class _Item:
    pair: PairConfig
    key: tuple[Any, ...]
    pk: str
    due: float
    offsets: set[tuple[TP, int]] = field(default_factory=set)
    source_event: SourceEvent | None = None
    event_ts: float | None = None


class IncrementalValidator:
    def __init__(self, settings: Settings, *, group_id: str | None = None, engine: StateEngine | None = None,
                 consumer_factory: Callable[..., GroupConsumer] | None = None,
                 on_confirmed: Callable[[Verdict, float | None], None] | None = None,
                 commit_interval_s: float = COMMIT_EVERY_S) -> None:
        """`on_confirmed(verdict, event_ts)` is called after a confirmed verdict is durable (benchmarks, hooks)."""
        self.settings = settings
        self.commit_interval_s = commit_interval_s
        self.on_confirmed = on_confirmed
        self.group_id = group_id or settings.kafka.consumer.group_id
        self._engine = engine
        self._consumer_factory = consumer_factory or GroupConsumer
        v = settings.validator
        self.rechecks = Rechecks(v.rechecks, v.recheck_delay_s)
        self.items: dict[tuple[str, str], _Item] = {}
        self.outstanding: dict[TP, dict[int, int]] = {}
        self.high: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self._conns: dict[str, mysql.Connection] = {}
        self.by_table: dict[str, list[PairConfig]] = {}
        for pair in settings.pairs:
            self.by_table.setdefault(pair.source.table, []).append(pair)
            if pair.target.table != pair.source.table:
                self.by_table.setdefault(pair.target.table, []).append(pair)
        self.assigned: set[TP] = set()
        self._running = False
        self._last_poll = 0.0
        self._last_error: str | None = None
        self._errors_in_row = 0
        self._paused = False
        self.last_dead_letter: dict[str, Any] | None = None  # shown on the status page
        self.stats = {"messages": 0, "rows": 0, "keys_checked": 0, "confirmed": 0, "dead_letters": 0, "commits": 0,
                      "own_writes": 0}
        self._consumer: GroupConsumer | None = None
        self._dlq: DeadLetters | None = None
        self._lag: dict[TP, int] | None = None  # None: not measured yet
        self._stop = threading.Event()  # the running stop event (set by run)

    # ------------------------------------------------------------ public

    def topics(self) -> list[str]:
        t = self.settings.kafka.topic
        names = []
        for pair in self.settings.pairs:
            for ref in (pair.source, pair.target):
                names.append(topic_for(t.mode, t.name, t.prefix, ref.schema_name, ref.table_name))
        return sorted(set(names))

    def health(self) -> dict[str, Any]:
        return {"running": self._running, "group_id": self.group_id,
                "assigned": sorted(f"{t}:{p}" for t, p in self.assigned),
                "pending_keys": len(self.items), "rechecking": len(self.rechecks), "paused": self._paused,
                "last_poll_age_s": round(time.monotonic() - self._last_poll, 3) if self._last_poll else None,
                "last_error": self._last_error, "consumer_lag_messages": self._lag_total(),
                "last_dead_letter": self.last_dead_letter, **self.stats}

    def _lag_total(self) -> int | str | None:
        if not self.settings.kafka.end_offsets_exact:
            return "unknown"
        return None if self._lag is None else sum(self._lag.values())

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then commit what is durable and return."""
        self._stop = stop
        engine = self._engine or state_engine(self.settings.state.dsn)
        self.engine = engine
        self._dlq = DeadLetters(self.settings.kafka, self.settings.kafka.dead_letter_topic)
        self._running = True
        try:
            self._consumer = open_interruptibly(self._subscribe, stop)
            if self._consumer is None:
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
            if self._consumer is not None:
                self._consumer.close()
            self._dlq.close()
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
            if self._engine is None:
                engine.dispose()

    def _subscribe(self) -> GroupConsumer:
        """Create the topics (data and dead-letter, `kafka.partitions` each) before subscribing, so no
        subscription auto-creates one with the broker's default count; a count that differs is one warning."""
        k = self.settings.kafka
        if self._consumer_factory is GroupConsumer:  # an injected (test) consumer has no broker to prepare
            try:
                problems = ensure_topics(k.bootstrap_servers, [*self.topics(), k.dead_letter_topic], k.partitions,
                                         k.replication_factor)
            except TransientError as exc:  # e.g. no CREATE permission: the topics may exist anyway
                problems = [f"{exc}; subscribing anyway"]
            for line in problems:
                log.warning("%s", line)
        return self._consumer_factory(k, self.topics(), group_id=self.group_id, on_revoked=self._on_revoked,
                                      on_assigned=self._on_assigned)

    # ------------------------------------------------------------ loop

    def _step(self) -> None:
        assert self._consumer is not None
        now = time.time()
        nxt = min([i.due for i in self.items.values() if not self._rechecking(i)]
                  + [self._recheck_due_wall(now)], default=now + 0.2)
        timeout = min(0.2, max(0.0, nxt - now))
        self._backpressure()
        records = self._consumer.poll(timeout, self.settings.kafka.consumer.max_poll_records)
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
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
            self._stop.wait(min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._errors_in_row, 6)))  # a stop ends the wait

    def _recheck_due_wall(self, now: float) -> float:
        nxt = self.rechecks.next_due()
        return now + 0.2 if nxt is None else now + max(0.0, nxt - time.monotonic())

    def _backpressure(self) -> None:
        assert self._consumer is not None
        want_pause = len(self.items) > MAX_PENDING or self._errors_in_row > 0
        if want_pause != self._paused:
            self._consumer.pause_all() if want_pause else self._consumer.resume_all()
            self._paused = want_pause

    # ------------------------------------------------------------ ingest

    def _ingest(self, rec: Record) -> None:
        tp = rec.tp
        self.high[tp] = max(self.high.get(tp, 0), rec.offset + 1)
        self.outstanding.setdefault(tp, {})
        self.stats["messages"] += 1
        if is_own_write(rec.headers):  # a repair's own write (invariant 5): not a new source change
            self.stats["own_writes"] += 1
            return
        try:
            msg = parse_flat_message(rec.value or b"")
            entries = self._entries(msg)
        except MalformedMessageError as exc:
            self._dead_letter(rec, str(exc))
            return
        now = time.time()
        es = msg.es / 1000.0 if msg.es else None
        due = settle_due(es, now, self.settings.validator.settle_delay_s)
        coords = coordinates_from_headers(rec.headers, msg.gtid)
        for pair, key, event in entries:
            pk = pk_string(key)
            ident = (pair.name, pk)
            item = self.items.get(ident)
            if item is None:
                item = self.items[ident] = _Item(pair, key, pk, due)
            else:
                self.rechecks.forget(pair.name, pk)  # a newer change: start over (settle, then check)
                item.due = max(item.due, due)
            if (tp, rec.offset) not in item.offsets:
                item.offsets.add((tp, rec.offset))
                counts = self.outstanding[tp]
                counts[rec.offset] = counts.get(rec.offset, 0) + 1
            if event is not None:  # where in the binlog compensation re-reads it (invariant 4)
                item.source_event = event.at(coords).following(item.source_event)
            if es is not None:
                item.event_ts = max(item.event_ts or 0.0, es)
            self.stats["rows"] += 1

    def _entries(self, msg: FlatMessage) -> list[tuple[PairConfig, tuple[Any, ...], SourceEvent | None]]:
        """(pair, key, source event or None) for every row of the message that belongs to a pair."""
        if msg.is_ddl or not msg.data:
            return []
        table = f"{msg.database}.{msg.table}"
        pairs = self.by_table.get(table, [])
        out = []
        for i, row in enumerate(msg.data):
            for pair in pairs:
                missing = [k for k in pair.key if k not in row or row[k] is None]
                if missing:
                    raise MalformedMessageError(f"row {i} of {table} has no value for key column(s) "
                                                f"{', '.join(missing)} of pair '{pair.name}'")
                key = tuple(row[k] for k in pair.key)
                event = None
                if table == pair.source.table:
                    old = msg.old[i] if msg.old and i < len(msg.old) else None
                    event = SourceEvent(msg.type, msg.database, msg.table, msg.es, row, old, msg.mysql_type,
                                        msg.sql_type)
                out.append((pair, key, event))
        return out

    def _dead_letter(self, rec: Record, reason: str) -> None:
        assert self._dlq is not None
        log.warning("validate: malformed message %s:%d@%d sent to %s: %s", rec.topic, rec.partition, rec.offset,
                    self._dlq.topic, reason)
        short = reason.split(":", 1)[0][:60] if ":" in reason else "malformed"
        metrics.DEAD_LETTERS.labels(short).inc()
        for attempt in range(5):
            try:
                self._dlq.send(rec, reason)
                break
            except Exception:
                if attempt == 4 or self._stop.is_set():  # on stop: the message stays uncommitted, re-read later
                    raise
                self._stop.wait(0.5 * 2**attempt)
        self.stats["dead_letters"] += 1
        self.last_dead_letter = {"reason": reason[:300], "at": time.time(), "topic": rec.topic,
                                 "partition": rec.partition, "offset": rec.offset}

    # ------------------------------------------------------------ checking

    def _process(self, now: float) -> None:
        due: dict[str, list[_Item]] = {}
        for item in self.items.values():
            if item.due <= now and not self._rechecking(item):
                due.setdefault(item.pair.name, []).append(item)
        batch = self.settings.validator.batch_max_keys
        for items in due.values():
            for start in range(0, len(items), batch):
                self._first_check(items[start:start + batch])
        for pair_name, keys in self.rechecks.due(time.monotonic()).items():
            pair = self.settings.pair(pair_name)
            for start in range(0, len(keys), batch):
                self._recheck(pair, keys[start:start + batch])

    def _check(self, pair: PairConfig, keys: list[tuple[Any, ...]]) -> list[Verdict]:
        src = self._conn(pair.source.server)
        tgt = self._conn(pair.target.server)
        verdicts = check(pair, keys, src, tgt, batch_size=self.settings.validator.batch_max_keys)
        self.stats["keys_checked"] += len(verdicts)
        metrics.KEYS_CHECKED.labels(pair.name, "stream").inc(len(verdicts))
        for v in verdicts:
            metrics.VERDICTS.labels(pair.name, v.kind).inc()
        return verdicts

    def _first_check(self, items: list[_Item]) -> None:
        pair = items[0].pair
        verdicts = self._check(pair, [i.key for i in items])
        confirmed = self.rechecks.add(verdicts, time.monotonic())
        self._finish(pair, [v for v in verdicts if not v.is_mismatch], confirmed)

    def _recheck(self, pair: PairConfig, keys: list[tuple[Any, ...]]) -> None:
        verdicts = self._check(pair, keys)
        confirmed = self.rechecks.feed(verdicts, time.monotonic())
        self._finish(pair, [v for v in verdicts if not v.is_mismatch], confirmed)

    def _finish(self, pair: PairConfig, consistent: list[Verdict], confirmed: list[Verdict]) -> None:
        """Make verdicts durable (ledger), then release their keys' offsets."""
        if not consistent and not confirmed:
            return
        events: dict[str, Any] = {}
        ts: dict[str, float] = {}
        for v in confirmed:
            item = self.items.get((pair.name, v.pk))
            if item is not None:
                if item.source_event is not None:
                    events[v.pk] = item.source_event
                if item.event_ts is not None:
                    ts[v.pk] = item.event_ts
        # On failure the keys are no longer in `rechecks` and not released: they start over at a first check.
        ledger.record_verdicts(self.engine, [*consistent, *confirmed], "stream", source_events=events,
                               event_ts=ts)
        now = time.time()
        for v in confirmed:
            metrics.CONFIRMED.labels(pair.name, v.kind).inc()
            self.stats["confirmed"] += 1
            if v.pk in ts:
                metrics.DETECTION_LATENCY.labels(pair.name).observe(max(0.0, now - ts[v.pk]))
            if self.on_confirmed is not None:
                self.on_confirmed(v, ts.get(v.pk))
        for v in [*consistent, *confirmed]:
            item = self.items.get((pair.name, v.pk))
            if item is not None:
                self._release(item)

    def _rechecking(self, item: _Item) -> bool:
        return self.rechecks.pending(item.pair.name, item.pk)

    def _release(self, item: _Item) -> None:
        self.items.pop((item.pair.name, item.pk), None)
        self.rechecks.forget(item.pair.name, item.pk)
        for tp, off in item.offsets:
            counts = self.outstanding.get(tp)
            if counts is None or off not in counts:
                continue
            counts[off] -= 1
            if counts[off] <= 0:
                del counts[off]

    def _conn(self, server: str) -> mysql.Connection:
        conn = self._conns.get(server)
        if conn is None:
            conn = self._conns[server] = mysql.connect(self.settings.server_dsn(server))
        return conn

    # ------------------------------------------------------------ offsets and rebalancing

    def safe_offsets(self, tps: list[TP] | None = None) -> dict[TP, int]:
        """Per partition: the first offset with an unfinished key, else one past the last message seen."""
        out = {}
        for tp in tps if tps is not None else list(self.high):
            if tp not in self.high:
                continue
            counts = self.outstanding.get(tp) or {}
            out[tp] = min(counts) if counts else self.high[tp]
        return out

    def _commit(self, tps: list[TP] | None = None) -> None:
        if self._consumer is None:
            return
        offsets = {tp: o for tp, o in self.safe_offsets(tps).items() if self._committed.get(tp) != o}
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except Exception as exc:  # e.g. a rebalance in progress: the next commit retries
            metrics.ERRORS.labels("validate", type(exc).__name__).inc()
            log.warning("validate: offset commit failed (%s); will retry", exc)
            return
        self._committed.update(offsets)
        self.stats["commits"] += 1

    def _refresh_lag(self) -> None:
        """Set `cdc_repair_validate_consumer_lag_messages` for this validator's partitions from the broker's end
        offsets and the committed offsets (none where the broker's end offsets are known to be wrong)."""
        if self._consumer is None or not self.settings.kafka.end_offsets_exact:
            return
        tps = sorted(self.assigned)
        try:
            ends = self._consumer.end_offsets(tps) if tps else {}
            committed: dict[TP, int | None] = {tp: self._committed.get(tp) for tp in tps}
            unknown = [tp for tp, o in committed.items() if o is None]
            if unknown:
                committed.update(self._consumer.committed(unknown))
            never = [tp for tp, o in committed.items() if o is None]
            beginnings = self._consumer.beginning_offsets(never) if never else {}
        except TransientError as exc:  # the next refresh retries; the last numbers stay
            log.debug("validate: consumer lag not refreshed: %s", exc)
            return
        self._lag = consumer_lag(ends, committed, beginnings)
        for (topic, part), lag in self._lag.items():
            metrics.CONSUMER_LAG.labels(topic, str(part)).set(lag)

    def _on_revoked(self, tps: list[TP]) -> dict[TP, int]:
        """The lost partitions' durable offsets (the consumer commits them before handing the partitions over),
        then forget their keys (the new owner re-reads from there). Runs inside `poll()`: no I/O here."""
        offsets = {tp: o for tp, o in self.safe_offsets(tps).items() if self._committed.get(tp) != o}
        lost = set(tps)
        for item in list(self.items.values()):
            if any(tp in lost for tp, _ in item.offsets):
                self._release(item)
        for tp in tps:
            if self._lag is not None:
                self._lag.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp[0], str(tp[1]))
            self.assigned.discard(tp)
            self.outstanding.pop(tp, None)
            self.high.pop(tp, None)
            self._committed.pop(tp, None)
        return offsets

    def _on_assigned(self, tps: list[TP]) -> None:
        self.assigned.update(tps)
        log.info("validate: assigned %s", ", ".join(f"{t}:{p}" for t, p in tps) or "nothing")
