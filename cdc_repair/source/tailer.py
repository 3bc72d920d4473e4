"""The capture stage: binlog → Canal FlatMessages in Kafka, at-least-once, resumable.

Contract for the daemon (runtime/) and `cdc-repair tail`:

    tailer = Tailer(settings, capture_config)      # cheap; no I/O
    tailer.run(stop_event)                          # blocks; returns after stop_event is set
    tailer.ready                                    # threading.Event: set once the stream is open
    tailer.health() -> dict                         # ready, position, checkpoint, lag_s, pending, last_error

* `run` returns when `stop_event` is set: it sends what it holds, waits (bounded) for Kafka's acks and saves the
  checkpoint at the last transaction boundary before returning.
* Transient trouble (server or broker unreachable, lost connection, a record the broker rejected) is logged with
  the place it is stuck, counted in `metrics.ERRORS{stage="capture"}`, and retried with backoff inside `run`
  (source/retry.py): never a silent exit, never a lost change. A produce failure (a rejected record, or no
  acknowledgement for `sink.kafka_producer.ack_deadline_s`) restarts from the last saved checkpoint with a new
  producer; `ready` is clear from the first unacknowledged wait until the stream runs again (source/readiness.py).
* Terminal trouble (server not ROW/FULL/FULL, missing privilege, binlog purged with `on_purged: fail`, schema
  drift) raises a `TerminalError` subclass with a one-line message naming the fix.
* Binlog purged with `on_purged: resume_and_full_validate`: resumes at the current position, counts
  `metrics.BINLOG_PURGED`, and inserts a `job_run` marker (see `state.checkpoints.full_scan_requested`).
* Changes without row images (statement DML on an included table; a partial row image with `on_partial_image:
  skip_and_full_validate`): not published, a full validation requested, `health()["ready"]` False until it has
  run (source/uncapturable.py). A row too large for one Kafka record is published with a marker (model/oversized.py).

Delivery: every record is produced with acks=all on an explicit PK-hash partition (sink/partitioning.py). The
checkpoint is written only at a transaction boundary, only after the broker acknowledged every record before it,
and only when something moved besides its own write (source/checkpointer.py).

Grouping (sink/grouping.py, Canal's event buffer): consecutive rows of one table and type inside a transaction are
grouped per partition into one FlatMessage (`data` holds several rows, in binlog order), up to
`capture.max_batch_rows` rows and ~1 MB; a message never holds rows of two transactions unless
`capture.group_across_transactions` is on. Encoding and sending: source/publisher.py; the event loop:
source/dispatch.py.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cdc_repair.config import CaptureConfig, Settings
from cdc_repair.sink.grouping import TransactionGrouper
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.source.binlog_reader import BinlogReader
from cdc_repair.source.checkpointer import Checkpointer
from cdc_repair.source.declared_types import DeclaredTypes
from cdc_repair.source.dispatch import StreamLoop
from cdc_repair.source.filters import TableMatcher, own_state_exclude
from cdc_repair.source.origin import TxnOrigin
from cdc_repair.source.outbox import CaptureCounters, Outbox
from cdc_repair.source.publisher import Publisher
from cdc_repair.source.readiness import Readiness
from cdc_repair.source.retry import run_with_retries
from cdc_repair.source.server_binlog import server_binlog
from cdc_repair.source.server_check import check_capture_server
from cdc_repair.source.topics import Topics
from cdc_repair.source.uncapturable import UncapturableGuard
from cdc_repair.stage import Stage

log = logging.getLogger(__name__)

GROUP_BYTES = 1 << 20  # raw row bytes per pending group before it is sent
# A group spanning transactions is sent at the first commit after this age, or at the next heartbeat: the
# server is asked for heartbeats this often when it has nothing to send, so a pause flushes within ~2x this.
GROUP_MAX_AGE_S = 0.05


class Tailer(Stage):
    def __init__(self, settings: Settings, capture: CaptureConfig, *, checkpoint_interval_s: float = 1.0) -> None:
        self.settings = settings
        self.capture = capture
        self.source = capture.server
        self.dsn = settings.server_dsn(capture.server)
        self.kafka = settings.kafka
        own_state = self._own_state_schema()
        self.matcher = TableMatcher(list(capture.include), [*capture.exclude, *own_state])
        self.checkpoint_interval_s = checkpoint_interval_s
        self.readiness = Readiness(self.source)
        self.ready = self.readiness.ready
        self._engine: Any = None
        self._sink: KafkaSink | None = None
        self.checkpointer = Checkpointer(self.source, self.dsn, lambda: self._engine, saves_in_binlog=bool(own_state))
        self._grouper = TransactionGrouper(across_transactions=capture.group_across_transactions,
                                           max_rows=capture.max_batch_rows, max_bytes=GROUP_BYTES,
                                           max_age_s=GROUP_MAX_AGE_S)
        self._declared = DeclaredTypes(self.dsn)
        self._origin = TxnOrigin(self.matcher)  # own-write marks and binlog coordinates (source/origin.py)
        self._guard = UncapturableGuard(self.source, self.dsn, self.matcher, capture.on_partial_image,
                                        lambda: self._engine)
        self._topics = Topics(self.kafka)
        counters = CaptureCounters()
        self._outbox = Outbox(counters, self.readiness, max_age_s=GROUP_MAX_AGE_S)
        self._publisher = Publisher(self.source, capture, self.kafka, topics=self._topics, outbox=self._outbox,
                                    counters=counters, declared=self._declared, origin=self._origin)
        self._loop: StreamLoop | None = None
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
        boundary, saved = self.checkpointer.boundary, self.checkpointer.saved
        return {
            "source": self.source, "ready": self.ready.is_set() and degraded is None, "degraded": degraded,
            "position": str(boundary) if boundary else None, "checkpoint": str(saved) if saved else None,
            "lag_s": self.readiness.lag_s, "pending": self._sink.pending if self._sink else 0,
            "last_error": self.readiness.last_error,
        }

    def run(self, stop: threading.Event) -> None:
        """Tail until `stop` is set (see the module docstring for the contract)."""
        try:
            run_with_retries(self._run_once, stop, source=self.source, readiness=self.readiness,
                             resume_from=lambda: self.checkpointer.boundary or self.checkpointer.saved
                             or "the configured start")
        finally:
            self.ready.clear()
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    # ------------------------------------------------------------------ one stream session

    def _run_once(self, stop: threading.Event) -> None:
        check_capture_server(self.dsn, self.source)
        if self._engine is None:
            from cdc_repair.state.engine import state_engine

            self._engine = state_engine(self.settings.state.dsn)
        # fixed (and saved) before Kafka is needed: it may be down for a while
        decision = self.checkpointer.start_decision(self.capture, self._sink)
        if self._sink is None:
            self._connect_sink(stop)
        sink = self._sink
        assert sink is not None
        server = server_binlog(self.dsn)
        reader = BinlogReader(self.dsn, self.capture.server_id, decision.position,
                              table_filter=self._origin.table_filter(),
                              is_mariadb=server.is_mariadb, only_schemas=self.matcher.only_schemas(),
                              heartbeat_s=min(self.capture.heartbeat_s, GROUP_MAX_AGE_S),
                              skip_to_timestamp=decision.skip_to_timestamp,
                              enum_labels=self.capture.enum_set == "label")
        self.checkpointer.begin_session(decision)
        self._reset_txn_state()
        log.info("capture %s: streaming %s from %s (%s)", self.source, self.dsn.masked(), decision.position,
                 decision.origin)
        self._loop = StreamLoop(sink=sink, grouper=self._grouper, origin=self._origin, publisher=self._publisher,
                                checkpointer=self.checkpointer, guard=self._guard, readiness=self.readiness,
                                matcher=self.matcher, checkpoint_interval_s=self.checkpoint_interval_s)
        try:
            self._loop.run(reader, stop)
        except BaseException:
            self._abandon_after_error()
            raise
        finally:
            reader.close()
            self._declared.close()

    def _connect_sink(self, stop: threading.Event) -> None:
        """A new producer (waits for the broker); topics are checked again (source/topics.py)."""
        sink = KafkaSink(self.kafka, on_stall=self.readiness.stalled)
        sink.connect(stop)
        self._sink = sink
        self._publisher.sink = sink
        self.checkpointer.new_sink()
        self._topics.use(sink)

    def _abandon_after_error(self) -> None:
        """After a failure mid-stream: keep what Kafka acknowledged; a sink that may have lost records after the
        checkpoint is closed, and the next attempt starts with a new producer (Checkpointer.abandon)."""
        unsent = self._grouper.pending or bool(self._outbox.records)
        self._reset_txn_state()
        if not self.checkpointer.abandon(self._sink, unsent) and self._sink is not None:
            self._sink.close()
            self._sink = None

    def _reset_txn_state(self) -> None:
        self._origin.reset()
        self._grouper.discard()
        self._outbox.clear()
