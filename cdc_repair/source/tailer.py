"""The capture stage: binlog → Canal FlatMessages in Kafka, at-least-once, resumable.

Contract for the daemon (runtime/) and `cdc-repair tail`:

    tailer = Tailer(settings, capture_config)      # cheap; no I/O
    tailer.run(stop_event)                          # blocks; returns after stop_event is set
    tailer.ready                                    # threading.Event: set once the stream is open
    tailer.health() -> dict                         # ready, position, checkpoint, lag_s, pending, last_error

* `run` returns when `stop_event` is set: it sends what it holds, waits (bounded) for Kafka's acks and saves the
  checkpoint at the last transaction boundary before returning.
* Transient trouble (server or broker unreachable, lost connection, a record the broker rejected) is logged with
  the place it is stuck, counted in `metrics.ERRORS{stage="capture"}`, and retried with backoff inside `run`:
  never a silent exit, never a lost change. A produce failure (a rejected record, or no acknowledgement for
  `sink.kafka_producer.ack_deadline_s`) restarts from the last saved checkpoint with a new producer; `ready` is
  clear from the first unacknowledged wait until the stream runs again.
* The start position of a first run (no checkpoint) is resolved and saved before Kafka is contacted, so changes
  made while the broker is still unreachable are captured once it answers.
* Terminal trouble (server not ROW/FULL/FULL, missing privilege, binlog purged with `on_purged: fail`, schema
  drift) raises a `TerminalError` subclass with a one-line message naming the fix.
* Binlog purged with `on_purged: resume_and_full_validate`: resumes at the current position, counts
  `metrics.BINLOG_PURGED`, and inserts a `job_run` marker (see `state.checkpoints.full_scan_requested`).
* Changes without row images (statement DML on an included table; a partial row image with `on_partial_image:
  skip_and_full_validate`): not published, a full validation requested, `health()["ready"]` False until it has
  run (source/uncapturable.py). A row too large for one Kafka record is published with a marker (model/oversized.py).

Delivery: every record is produced with acks=all on an explicit PK-hash partition (sink/partitioning.py). The
checkpoint (file, pos, GTID set) is written only at a transaction boundary (XID/COMMIT/DDL) and only after the
broker acknowledged every record before it. A restart resumes there: duplicates possible, losses not. It is
written only when something moved besides the checkpoint's own write (records published, a DDL, another binlog
file, other transactions): with the state schema on the captured server, saving a checkpoint is itself a
transaction in the binlog, and it must not cause the next save, or an idle tailer would write every second. So
after each save the tailer notes the server's binlog end (which covers that write) and saves again only for a
boundary past it or for records it published.

Grouping (sink/grouping.py, Canal's event buffer): consecutive rows of one table and type inside a transaction are
grouped per partition into one FlatMessage (`data` holds several rows, in binlog order), up to
`capture.max_batch_rows` rows and ~1 MB; a message never holds rows of two transactions unless
`capture.group_across_transactions` is on. Encoding: sink/flat_message.py; partitions: sink/partitioning.py.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cdc_repair import metrics
from cdc_repair.checkpoint.resume import StartDecision, resolve_start
from cdc_repair.config import CaptureConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.server_checks import REQUIRED_BINLOG, binlog_problems, fetch_grants, grant_problems, parse_grants
from cdc_repair.db.sql import Statement
from cdc_repair.errors import (
    BinlogPurgedError,
    CdcRepairError,
    ServerSettingsError,
    TerminalError,
    TransientError,
)
from cdc_repair.model.oversized import OVERSIZED_FIELD, OVERSIZED_MARKER, shrink_images
from cdc_repair.model.position import BinlogPosition
from cdc_repair.sink.flat_message import dml_fields, encode_ddl, encode_fields, image_rows, update_rows
from cdc_repair.sink.grouping import Group, Part, TransactionGrouper
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.sink.partitioning import hash_seed, key_bytes, partitions_of, topic_for
from cdc_repair.source.binlog_reader import BinlogReader, server_binlog
from cdc_repair.source.ddl import classify_ddl
from cdc_repair.source.declared_types import DeclaredTypes
from cdc_repair.source.decoder import RowDecoder
from cdc_repair.source.events import Commit, Ddl, Gtid, Heartbeat, PartialRows, Rotate, RowsData, StatementRows
from cdc_repair.source.filters import TableMatcher, own_state_exclude
from cdc_repair.source.origin import TxnOrigin
from cdc_repair.source.uncapturable import UncapturableGuard
from cdc_repair.stage import Stage

log = logging.getLogger(__name__)

GROUP_BYTES = 1 << 20  # raw row bytes per pending group before it is sent
# A group spanning transactions is sent at the first commit after this age, or at the next heartbeat: the
# server is asked for heartbeats this often when it has nothing to send, so a pause flushes within ~2x this.
GROUP_MAX_AGE_S = 0.05
CONFIRM_EVERY_RECORDS = 20000  # bound the futures kept inside one huge transaction
# Encoded messages are handed to the producer in bursts (each stays its own record): one kafka-python send per
# record is cheap, but waking its sender thread for every new batch costs a GIL hand-off per small transaction.
OUTBOX_RECORDS = 1000


def _state_api() -> Any:
    from cdc_repair.state import checkpoints  # SQLAlchemy stays under state/

    return checkpoints


class Tailer(Stage):
    def __init__(self, settings: Settings, capture: CaptureConfig, *, checkpoint_interval_s: float = 1.0) -> None:
        self.settings = settings
        self.capture = capture
        self.source = capture.server
        self.dsn = settings.server_dsn(capture.server)
        self.kafka = settings.kafka
        own_state = self._own_state_schema()
        self.matcher = TableMatcher(list(capture.include), [*capture.exclude, *own_state])
        self._saves_in_binlog = bool(own_state)  # each checkpoint save is a transaction in the captured binlog
        self.checkpoint_interval_s = checkpoint_interval_s
        self.ready = threading.Event()
        self._engine: Any = None
        self._sink: KafkaSink | None = None
        self._partitions: dict[str, int] = {}
        self._topics_ready: set[str] = set()
        self._metric_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._saved: BinlogPosition | None = None
        self._sent_at_save = 0  # the sink's `sent` count when the checkpoint was last saved
        self._own_write_end: BinlogPosition | None = None  # the server's binlog end right after that save
        self._boundary: BinlogPosition | None = None
        self._skipping = False  # streaming from a start timestamp, before the first transaction at or after it
        self._boundary_ts: float | None = None
        self._last_error: str | None = None
        self._lag_s: float | None = None
        self._lag_gauge = metrics.BINLOG_LAG_SECONDS.labels(self.source)
        self._grouper = TransactionGrouper(across_transactions=capture.group_across_transactions,
                                           max_rows=capture.max_batch_rows, max_bytes=GROUP_BYTES,
                                           max_age_s=GROUP_MAX_AGE_S)
        self._declared = DeclaredTypes(self.dsn)
        self._max_message = self.kafka.producer.max_request_size - 1024  # a larger group is split in halves
        self._seeds: dict[str, int] = {}
        self._origin = TxnOrigin(self.matcher)  # own-write marks and binlog coordinates (source/origin.py)
        self._guard = UncapturableGuard(self.source, self.dsn, self.matcher, capture.on_partial_image,
                                        lambda: self._engine)
        self._reset_txn_state()

    def _own_state_schema(self) -> list[str]:
        """`[state_db.*]` when the state schema lives on this server: its rows are cdc-repair's own bookkeeping
        (checkpoints, ledger), never data to publish, and capturing them would make every checkpoint write
        publish a row that needs another checkpoint."""
        exclude = own_state_exclude(self.settings.state.dsn, self.dsn)
        state = self.settings.state.dsn.database
        if exclude and state and TableMatcher(list(self.capture.include), []).schema_included(state):
            log.info("capture %s: not publishing the state schema %s (cdc-repair's own writes on this server)",
                     self.source, state)
        return exclude

    # ------------------------------------------------------------------ public

    def health(self) -> dict[str, Any]:
        degraded = self._guard.degraded  # statement DML / partial images / server settings (uncapturable.py)
        return {
            "source": self.source, "ready": self.ready.is_set() and degraded is None, "degraded": degraded,
            "position": str(self._boundary) if self._boundary else None,
            "checkpoint": str(self._saved) if self._saved else None,
            "lag_s": self._lag_s, "pending": self._sink.pending if self._sink else 0,
            "last_error": self._last_error,
        }

    def run(self, stop: threading.Event) -> None:
        """Tail until `stop` is set (see the module docstring for the contract)."""
        delay = 1.0
        try:
            while not stop.is_set():
                try:
                    self._run_once(stop)
                    delay = 1.0
                except TerminalError:
                    raise
                except (CdcRepairError, OSError, Exception) as exc:  # transient: log, count, back off, resume
                    if self.ready.is_set():  # the stream had been running: a new incident, back off from 1 s
                        delay = 1.0
                    kind = type(exc).__name__
                    self._last_error = f"{kind}: {exc}"
                    metrics.ERRORS.labels("capture", kind).inc()
                    if isinstance(exc, TransientError):
                        log.warning("capture %s: %s; retrying in %.0fs from %s", self.source, exc, delay,
                                    self._boundary or self._saved or "the configured start")
                    else:
                        log.exception("capture %s failed; retrying in %.0fs", self.source, delay)
                    self.ready.clear()
                    if stop.wait(delay):
                        break
                    delay = min(delay * 2, 30.0)
        finally:
            self.ready.clear()
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    # ------------------------------------------------------------------ one stream session

    def _run_once(self, stop: threading.Event) -> None:
        self._preflight()
        if self._engine is None:
            from cdc_repair.state.engine import state_engine

            self._engine = state_engine(self.settings.state.dsn)
        decision = self._start_decision()  # fixed (and saved) before Kafka is needed: it may be down for a while
        if self._sink is None:
            self._connect_sink(stop)
        server = server_binlog(self.dsn)
        reader = BinlogReader(self.dsn, self.capture.server_id, decision.position,
                              table_filter=self._origin.table_filter(),
                              is_mariadb=server.is_mariadb, only_schemas=self.matcher.only_schemas(),
                              heartbeat_s=min(self.capture.heartbeat_s, GROUP_MAX_AGE_S),
                              skip_to_timestamp=decision.skip_to_timestamp,
                              enum_labels=self.capture.enum_set == "label")
        self._boundary = decision.position
        # `start: {timestamp}`: no checkpoint until the first transaction at or after it has committed, so a
        # restart meanwhile resolves the timestamp again instead of resuming amid the skipped transactions
        self._skipping = decision.skip_to_timestamp is not None
        self._reset_txn_state()
        log.info("capture %s: streaming %s from %s (%s)", self.source, self.dsn.masked(), decision.position,
                 decision.origin)
        try:
            self._stream(reader, stop)
        except BaseException:
            self._abandon_after_error()
            raise
        finally:
            reader.close()
            self._declared.close()

    def _connect_sink(self, stop: threading.Event) -> None:
        """A new producer (waits for the broker). Topics are checked again: a broker that lost its data (or
        another cluster behind the same address) must get them created with our partition count."""
        sink = KafkaSink(self.kafka, on_stall=self._on_stall)
        sink.connect(stop)
        self._sink = sink
        self._sent_at_save = 0
        self._topics_ready.clear()
        self._partitions.clear()
        if self.kafka.topic.mode == "single":
            self._ensure_topic(self.kafka.topic.name)

    def _on_stall(self, reason: str) -> None:
        """Kafka is not acknowledging: not ready (so /readyz says 503) until acknowledgements flow again."""
        self._last_error = reason
        self.ready.clear()

    def _abandon_after_error(self) -> None:
        """After a failure mid-stream: keep what Kafka acknowledged, resume from the last safe boundary.

        Rows still grouped but unsent may belong to transactions before `_boundary`, so then the boundary is
        not safe and we fall back to the saved checkpoint (re-reading means duplicates, never losses). A sink that
        failed (a rejected or unacknowledged record) raises again on `confirm`, so the boundary is never saved
        past it; the sink is closed and the next attempt starts with a new producer.
        """
        unsent = self._grouper.pending or bool(self._outbox)
        boundary, self._boundary = self._boundary, self._saved  # pessimistic until proven acked
        self._reset_txn_state()
        sink = self._sink
        if sink is None:
            return
        try:
            acked = not unsent and sink.confirm(None)  # raises again if the sink failed before
        except CdcRepairError:
            acked = False
        if acked and boundary is not None:
            self._save_checkpoint(boundary)
            self._boundary = boundary
        else:  # records after the checkpoint may be lost: re-read them with a fresh producer
            sink.close()
            self._sink = None

    def _start_decision(self) -> StartDecision:
        if self._boundary is not None and self._saved is not None:
            # resuming inside this process after a transient error: from the last boundary we processed
            return StartDecision(self._boundary, origin="boundary")
        api = _state_api()
        saved_row = api.load_checkpoint(self._engine, self.source)
        saved = BinlogPosition(saved_row.binlog_file, saved_row.binlog_pos, saved_row.gtid_set) if saved_row else None
        server = server_binlog(self.dsn)
        try:
            decision = resolve_start(saved, self.capture, server.current, server.files)
        except BinlogPurgedError as exc:
            metrics.BINLOG_PURGED.labels(self.source).inc()
            log.error("capture %s: %s", self.source, exc)
            raise
        if decision.purged_reason:
            metrics.BINLOG_PURGED.labels(self.source).inc()
            log.error("capture %s: %s; resuming at the current position %s and requesting a full validation of "
                      "every pair (on_purged: resume_and_full_validate)", self.source, decision.purged_reason,
                      decision.position)
            api.request_full_scan(self._engine, f"capture {self.source}: {decision.purged_reason}; resumed at "
                                                f"{decision.position}")
            self._saved = None
            self._save_checkpoint(decision.position)
        elif saved is None and decision.skip_to_timestamp is None:
            self._save_checkpoint(decision.position)  # a restart before the first commit resumes here too
        else:
            self._saved = saved
        return decision

    def _preflight(self) -> None:
        conn = mysql.connect(self.dsn.with_database(None), timeout_s=10)
        try:
            variables = mysql.fetch_variables(conn, ["log_bin", *REQUIRED_BINLOG, "log_bin_compress",
                                                     "binlog_row_value_options"])
            path = f"servers.{self.source}"
            problems = binlog_problems(path, variables)
            if variables.get("log_bin_compress", "OFF").upper() in ("ON", "1"):
                problems.append(f"{path}: log_bin_compress is ON: compressed rows events cannot be captured "
                                f"(SET GLOBAL log_bin_compress=OFF and put log_bin_compress=OFF in my.cnf)")
            if "PARTIAL_JSON" in variables.get("binlog_row_value_options", "").upper():
                problems.append(f"{path}: binlog_row_value_options is PARTIAL_JSON: capture needs full JSON values "
                                f"(SET GLOBAL binlog_row_value_options='' and remove it from my.cnf)")
            problems += grant_problems(path, parse_grants(fetch_grants(conn)), capture=True, reads=[], writes=[])
            mysql.fetch_all(conn, Statement("SELECT 1"))
        finally:
            conn.close()
        if problems:
            raise ServerSettingsError("; ".join(problems))

    # ------------------------------------------------------------------ the event loop

    def _reset_txn_state(self) -> None:
        self._origin.reset()
        self._in_txn = False
        self._grouper.discard()
        self._outbox: list[tuple[str, int, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self._outbox_since = 0.0
        self._outbox_counts: dict[tuple[str, str], list[int]] = {}  # metrics, counted when the outbox drains
        self._outbox_es = 0

    def _stream(self, reader: BinlogReader, stop: threading.Event) -> None:
        last_ckpt = time.monotonic()
        self.ready.set()
        sink = self._sink
        assert sink is not None
        for ev in reader.events():
            if isinstance(ev, RowsData):
                self._on_rows(ev)
                if sink.pending > CONFIRM_EVERY_RECORDS:
                    self._confirm(stop)
            elif isinstance(ev, Commit):
                self._send_groups(self._grouper.commit())
                if self._origin.marked:
                    self._flush_groups()  # a repair's rows never share a message with the next transaction's
                elif self._outbox and time.monotonic() - self._outbox_since >= GROUP_MAX_AGE_S:
                    self._drain_outbox()
                self._origin.end_txn()
                self._in_txn = False
                self._skipping = False  # the reader passes only transactions at or after a start timestamp
                self._boundary = ev.position
                self._boundary_ts = float(ev.timestamp)
                if ev.timestamp:
                    self._lag_s = max(0.0, time.time() - ev.timestamp)
                    self._lag_gauge.set(self._lag_s)
                now = time.monotonic()
                if now - last_ckpt >= self.checkpoint_interval_s:
                    self._flush_groups()
                    self._checkpoint(stop)
                    last_ckpt = now
                self._guard.tick()
            elif isinstance(ev, Gtid):
                self._in_txn = True
                self._grouper.begin(ev.gtid)
            elif isinstance(ev, Ddl):
                self._flush_groups()
                self._on_ddl(ev)
                self._grouper.commit()
                self._origin.end_txn()
                self._in_txn = False
                self._skipping = False
                self._boundary = ev.position
                self._boundary_ts = float(ev.timestamp)
                self._checkpoint(stop, force=True)
                last_ckpt = time.monotonic()
            elif isinstance(ev, Heartbeat):
                self._guard.tick()
                self._flush_groups()
                self._lag_s = 0.0  # the server had nothing more to send: we are caught up
                self._lag_gauge.set(0.0)
                if not self._in_txn and self._boundary != self._saved and \
                        time.monotonic() - last_ckpt >= self.checkpoint_interval_s:
                    self._checkpoint(stop)
                    last_ckpt = time.monotonic()
            elif isinstance(ev, Rotate) and not self._in_txn:
                self._boundary = ev.position
            elif isinstance(ev, StatementRows):  # not publishable: requests a full validation (durably, now)
                self._guard.on_statement(ev, self._boundary)
            elif isinstance(ev, PartialRows):  # fails, or is skipped with a full validation requested
                self._guard.on_partial(ev, self._boundary)
            if stop.is_set():
                break
        self._flush_groups()
        self._checkpoint(stop, force=True)

    def _on_rows(self, ev: RowsData) -> None:
        decoder = ev.decoder
        self._in_txn = True
        if self._origin.rows(decoder.schema.table, decoder.names, self._flush_groups):
            return  # a repair's marker row: not published, it tags the transaction's other rows
        images = decoder.images(ev.body, ev.start, ev.end)
        if ev.kind == "UPDATE":
            rows, olds = update_rows(decoder.names, images)
            keyed = images[1::2]  # Canal hashes the after-image
        else:
            rows, olds, keyed = image_rows(decoder.names, images), None, images
        database = decoder.schema.database
        seed = self._seeds.get(database)
        if seed is None:
            seed = self._seeds[database] = hash_seed(database, self.capture.partition_hash)
        partitions = partitions_of(keyed, decoder.pk_indexes, self._partition_count(decoder), seed)
        self._send_groups(self._grouper.add(decoder, ev.kind, rows, olds, partitions, ev.timestamp * 1000,
                                            ev.end - ev.start, txn_start=self._boundary))

    def _partition_count(self, decoder: RowDecoder) -> int:
        topic = self._topic(decoder.schema.database, decoder.schema.table)
        n = self._partitions.get(topic)
        if n is None:
            self._ensure_topic(topic)
            n = self._partitions[topic]
        return n

    def _topic(self, database: str, table: str) -> str:
        t = self.kafka.topic
        return topic_for(t.mode, t.name, t.prefix, database, table)

    def _ensure_topic(self, topic: str) -> None:
        sink = self._sink
        assert sink is not None
        if topic not in self._topics_ready:
            sink.ensure_topics([topic], self.kafka.partitions, self.kafka.replication_factor)
            self._topics_ready.add(topic)
        self._partitions[topic] = sink.partitions(topic)

    def _flush_groups(self) -> None:
        """Send every row held by the grouper and the outbox (before waiting for acks, a DDL, or on a pause)."""
        self._send_groups(self._grouper.flush())
        self._drain_outbox()

    def _drain_outbox(self) -> None:
        outbox = self._outbox
        if outbox:
            send = self._sink.send  # type: ignore[union-attr]  # set while streaming
            for topic, partition, key, value, headers in outbox:
                send(topic, partition, key, value, headers)
            self._outbox = []
        for (table, kind), (events, rows, nbytes) in self._outbox_counts.items():
            children = self._children(table, kind)
            children[0].inc(events)
            children[1].inc(rows)
            children[2].inc(nbytes)
        self._outbox_counts = {}
        if self._outbox_es:  # lag of the last row event handed to Kafka
            self._lag_s = max(0.0, time.time() - self._outbox_es / 1000)
            self._lag_gauge.set(self._lag_s)
            self._outbox_es = 0

    def _send_groups(self, groups: list[Group]) -> None:
        for group in groups:
            self._send_group(group)

    def _send_group(self, group: Group) -> None:
        decoder: RowDecoder = group.table  # type: ignore[assignment]  # the tailer keys groups by table plan
        schema = decoder.schema
        topic = self._topic(schema.database, schema.table)
        mysql_type = self._declared.mysql_type(decoder)
        ts = int(time.time() * 1000)
        self._origin.grouped(group.txn_start)  # type: ignore[arg-type]  # the tailer passes BinlogPosition | None
        headers = self._origin.headers()  # repair mark, and where the group's first transaction starts
        self._origin.flushed()
        total = 0
        for p, part in group.parts.items():
            total += self._send_rows(topic, p, decoder, group.kind, part, part.rows, part.olds, mysql_type, ts,
                                     headers)
        counts = self._outbox_counts.get((schema.qualified, group.kind))
        if counts is None:
            self._outbox_counts[(schema.qualified, group.kind)] = [group.events, group.rows, total]
        else:
            counts[0] += group.events
            counts[1] += group.rows
            counts[2] += total
        if group.es:
            self._outbox_es = group.es
        if len(self._outbox) >= OUTBOX_RECORDS:
            self._drain_outbox()

    def _send_rows(self, topic: str, partition: int, decoder: RowDecoder, kind: str, part: Part,
                   rows: list[dict[str, str | None]], olds: list[dict[str, str | None]] | None,
                   mysql_type: dict[str, str], ts: int, headers: list[tuple[str, bytes]]) -> int:
        schema = decoder.schema
        fields = dml_fields(database=schema.database, table=schema.table, kind=kind, rows=rows, olds=olds,
                            pk_names=decoder.pk_names, mysql_type=mysql_type, sql_type=_sql_type(decoder, rows),
                            es=part.es, ts=ts, id=part.txn_id, gtid=part.gtid)
        value = encode_fields(fields)
        limit = self._max_message
        if len(value) > limit and len(rows) == 1:
            value = self._mark_oversized(fields, decoder, len(value), limit)
        if len(rows) > 1 and len(value) > limit:
            half = len(rows) // 2
            return (self._send_rows(topic, partition, decoder, kind, part, rows[:half],
                                    olds[:half] if olds else None, mysql_type, ts, headers)
                    + self._send_rows(topic, partition, decoder, kind, part, rows[half:],
                                      olds[half:] if olds else None, mysql_type, ts, headers))
        key = key_bytes([rows[0][n] for n in decoder.pk_names]) if len(rows) == 1 and decoder.pk_names else None
        if not self._outbox:
            self._outbox_since = time.monotonic()
        self._outbox.append((topic, partition, key, value, headers))
        return len(value)

    def _mark_oversized(self, fields: dict[str, Any], decoder: RowDecoder, size: int, limit: int) -> bytes:
        """One row too large for a Kafka record: publish it with its largest values replaced by the marker
        (model/oversized.py), counted and logged; the validator reads the real row from the database."""
        olds = fields["old"]
        keys = decoder.pk_names or []
        images, replaced = shrink_images([fields["data"][0], olds[0] if olds else None], size - limit, keep=keys)
        fields["data"] = [images[0]]
        if olds:
            fields["old"] = [images[1]]
        fields[OVERSIZED_FIELD] = replaced
        value = encode_fields(fields)
        table = decoder.schema.qualified
        metrics.CAPTURE_OVERSIZED.labels(table).inc()
        key = ", ".join(f"{n}={images[0].get(n) if images[0] else None}" for n in keys) or "without a key"
        log.warning("capture %s: %s of %s row %s (gtid %s) is %d bytes as a FlatMessage, over "
                    "kafka.producer.max_request_size (%d): published with %s replaced by %r; validation reads the "
                    "row from the database", self.source, fields["type"], table, key, fields["gtid"] or "-", size,
                    self.kafka.producer.max_request_size, ", ".join(replaced), OVERSIZED_MARKER)
        return value

    def _children(self, table: str, kind: str) -> tuple[Any, Any, Any]:
        hit = self._metric_children.get((table, kind))
        if hit is None:
            hit = (metrics.CAPTURED_EVENTS.labels(table, kind), metrics.CAPTURED_ROWS.labels(table, kind),
                   metrics.CAPTURED_BYTES.labels(table, kind))
            self._metric_children[(table, kind)] = hit
        return hit

    def _on_ddl(self, ev: Ddl) -> None:
        info = classify_ddl(ev.sql, ev.schema)
        if info is None:
            return
        if info.table:
            if not self.matcher(info.database, info.table):
                return
        elif not self.matcher.schema_included(info.database):
            return
        topic = self._topic(info.database, info.table)
        if topic not in self._partitions:
            self._ensure_topic(topic)
        if not self._grouper.in_txn:  # no GTID event before it (GTIDs off): the DDL is a transaction of its own
            self._grouper.begin("")
        value = encode_ddl(database=info.database, table=info.table, kind=info.type, sql=ev.sql,
                           es=ev.timestamp * 1000, ts=int(time.time() * 1000), id=self._grouper.txn_id,
                           gtid=self._grouper.gtid)
        sink = self._sink
        assert sink is not None
        sink.send(topic, 0, None, value)
        self._children(f"{info.database}.{info.table}" if info.table else info.database, info.type)[0].inc()
        log.info("capture %s: DDL %s on %s.%s published", self.source, info.type, info.database, info.table or "*")

    # ------------------------------------------------------------------ checkpoints

    def _confirm(self, stop: threading.Event) -> bool:
        sink = self._sink
        assert sink is not None
        done = sink.confirm(stop)
        if done and not self.ready.is_set() and not stop.is_set():  # acknowledgements flow again after a stall
            self.ready.set()
        return done

    def _checkpoint(self, stop: threading.Event, *, force: bool = False) -> None:
        """Save the last boundary once Kafka acknowledged everything sent before it, if it is worth a write
        (`force`: at a DDL and when stopping)."""
        boundary = self._boundary
        if boundary is None or self._in_txn or self._skipping:
            return
        if not self._confirm(stop):
            log.warning("capture %s: stopping without Kafka acks; checkpoint stays at %s", self.source, self._saved)
            return
        if boundary != self._saved and (force or self._worth_saving(boundary)):
            self._save_checkpoint(boundary)

    def _worth_saving(self, boundary: BinlogPosition) -> bool:
        """Records were published since the last save, or the boundary is past the binlog end noted right after
        it (other transactions): never just because of our own checkpoint write."""
        saved, sink, own = self._saved, self._sink, self._own_write_end
        return (saved is None or (sink is not None and sink.sent != self._sent_at_save)
                or own is None or boundary.is_after(own))

    def _binlog_end(self) -> BinlogPosition | None:
        """The server's binlog end now, when our checkpoint saves go to this server's binlog (else None)."""
        if not self._saves_in_binlog:
            return None
        try:
            return server_binlog(self.dsn).current
        except (CdcRepairError, mysql.DriverError) as exc:  # then any later boundary counts as worth a save
            log.debug("capture %s: binlog end not known after a checkpoint save: %s", self.source, exc)
            return None

    def _save_checkpoint(self, position: BinlogPosition) -> None:
        _state_api().save_checkpoint(self._engine, self.source, position.file, position.pos, position.gtid_set,
                                     self._boundary_ts)
        self._saved = position
        self._sent_at_save = self._sink.sent if self._sink is not None else 0
        self._own_write_end = self._binlog_end()
        metrics.CHECKPOINTS.labels(self.source).inc()
        metrics.BINLOG_POSITION.labels(self.source).info({"file": position.file})
        metrics.BINLOG_OFFSET.labels(self.source).set(position.pos)


def _sql_type(decoder: RowDecoder, rows: list[dict[str, str | None]]) -> dict[str, int]:
    """Canal widens an unsigned integer column's sqlType when a value exceeds the signed maximum."""
    if not decoder.unsigned_ints:
        return decoder.sql_type
    widened: dict[str, int] | None = None
    for _i, name, limit, code in decoder.unsigned_ints:
        for row in rows:
            value = row.get(name)
            if value is not None and int(value) > limit:
                widened = widened or dict(decoder.sql_type)
                widened[name] = code
                break
    return widened or decoder.sql_type
