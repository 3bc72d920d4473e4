"""Where capture resumes: the start decision, the transaction boundary, and when it is saved (state/checkpoints).

The checkpoint (file, pos, GTID set) is written only at a transaction boundary (XID/COMMIT/DDL) and only after
the broker acknowledged every record before it; a restart resumes there: duplicates possible, losses not.

It is written only when something moved besides the checkpoint's own write (records published, a DDL, another
binlog file, other transactions): with the state schema on the captured server, saving a checkpoint is itself
a transaction in the binlog, and it must not cause the next save, or an idle tailer would write every second.
So after each save the server's binlog end (which covers that write) is noted, and the next save needs a
boundary past it or records published since.

The start position of a first run (no checkpoint) is resolved and saved before Kafka is contacted, so changes
made while the broker is still unreachable are captured once it answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cdc_repair import metrics
from cdc_repair.checkpoint.resume import StartDecision, resolve_start
from cdc_repair.config import CaptureConfig
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.errors import BinlogPurgedError, CdcRepairError
from cdc_repair.model.position import BinlogPosition
from cdc_repair.sink.kafka_producer import KafkaSink
from cdc_repair.source.server_binlog import server_binlog

log = logging.getLogger(__name__)


def _state_api() -> Any:
    from cdc_repair.state import checkpoints  # SQLAlchemy stays under state/

    return checkpoints


class Checkpointer:
    """The boundary reached (`boundary`), the one saved (`saved`), and the rules for saving."""

    def __init__(self, source: str, dsn: Dsn, engine: Callable[[], Any], *, saves_in_binlog: bool) -> None:
        self.source = source
        self.dsn = dsn
        self._engine = engine
        self._saves_in_binlog = saves_in_binlog  # each save is a transaction in the captured binlog
        self.saved: BinlogPosition | None = None
        self.boundary: BinlogPosition | None = None
        self.boundary_ts: float | None = None
        # `start: {timestamp}`: no checkpoint until the first transaction at or after it has committed, so a
        # restart meanwhile resolves the timestamp again instead of resuming amid the skipped transactions
        self.skipping = False
        self._sent_at_save = 0  # the sink's `sent` count when the checkpoint was last saved
        self._own_write_end: BinlogPosition | None = None  # the server's binlog end right after that save

    def reached(self, position: BinlogPosition, timestamp: float) -> None:
        """A transaction (or DDL) ended: `position` is where the next one starts."""
        self.boundary = position
        self.boundary_ts = timestamp
        self.skipping = False  # the reader passes only transactions at or after a start timestamp

    def start_decision(self, capture: CaptureConfig, sink: KafkaSink | None) -> StartDecision:
        if self.boundary is not None and self.saved is not None:
            # resuming inside this process after a transient error: from the last boundary we processed
            return StartDecision(self.boundary, origin="boundary")
        api = _state_api()
        saved_row = api.load_checkpoint(self._engine(), self.source)
        saved = BinlogPosition(saved_row.binlog_file, saved_row.binlog_pos, saved_row.gtid_set) if saved_row else None
        server = server_binlog(self.dsn)
        try:
            decision = resolve_start(saved, capture, server.current, server.files)
        except BinlogPurgedError as exc:
            metrics.BINLOG_PURGED.labels(self.source).inc()
            log.error("capture %s: %s", self.source, exc)
            raise
        if decision.purged_reason:
            metrics.BINLOG_PURGED.labels(self.source).inc()
            log.error("capture %s: %s; resuming at the current position %s and requesting a full validation of "
                      "every pair (on_purged: resume_and_full_validate)", self.source, decision.purged_reason,
                      decision.position)
            api.request_full_scan(self._engine(), f"capture {self.source}: {decision.purged_reason}; resumed at "
                                                  f"{decision.position}")
            self.saved = None
            self.save(decision.position, sink)
        elif saved is None and decision.skip_to_timestamp is None:
            self.save(decision.position, sink)  # a restart before the first commit resumes here too
        else:
            self.saved = saved
        return decision

    def begin_session(self, decision: StartDecision) -> None:
        self.boundary = decision.position
        self.skipping = decision.skip_to_timestamp is not None

    def checkpoint(self, sink: KafkaSink, confirm: Callable[[threading.Event], bool], stop: threading.Event, *,
                   in_txn: bool, force: bool = False) -> None:
        """Save the last boundary once Kafka acknowledged everything sent before it, if it is worth a write
        (`force`: at a DDL and when stopping)."""
        boundary = self.boundary
        if boundary is None or in_txn or self.skipping:
            return
        if not confirm(stop):
            log.warning("capture %s: stopping without Kafka acks; checkpoint stays at %s", self.source, self.saved)
            return
        if boundary != self.saved and (force or self._worth_saving(boundary, sink)):
            self.save(boundary, sink)

    def abandon(self, sink: KafkaSink | None, unsent: bool) -> bool:
        """After a failure mid-stream: keep what Kafka acknowledged, resume from the last safe boundary.
        Returns False when the sink must be replaced (records after the checkpoint may be lost: re-read them).

        Rows still grouped but unsent may belong to transactions before `boundary`, so then the boundary is
        not safe and we fall back to the saved checkpoint (re-reading means duplicates, never losses). A sink that
        failed (a rejected or unacknowledged record) raises again on `confirm`, so the boundary is never saved
        past it.
        """
        boundary, self.boundary = self.boundary, self.saved  # pessimistic until proven acked
        if sink is None:
            return True
        try:
            acked = not unsent and sink.confirm(None)  # raises again if the sink failed before
        except CdcRepairError:
            acked = False
        if acked and boundary is not None:
            self.save(boundary, sink)
            self.boundary = boundary
            return True
        return False

    def _worth_saving(self, boundary: BinlogPosition, sink: KafkaSink) -> bool:
        """Records were published since the last save, or the boundary is past the binlog end noted right after
        it (other transactions): never just because of our own checkpoint write."""
        saved, own = self.saved, self._own_write_end
        return saved is None or sink.sent != self._sent_at_save or own is None or boundary.is_after(own)

    def new_sink(self) -> None:
        self._sent_at_save = 0

    def _binlog_end(self) -> BinlogPosition | None:
        """The server's binlog end now, when our checkpoint saves go to this server's binlog (else None)."""
        if not self._saves_in_binlog:
            return None
        try:
            return server_binlog(self.dsn).current
        except (CdcRepairError, mysql.DriverError) as exc:  # then any later boundary counts as worth a save
            log.debug("capture %s: binlog end not known after a checkpoint save: %s", self.source, exc)
            return None

    def save(self, position: BinlogPosition, sink: KafkaSink | None) -> None:
        _state_api().save_checkpoint(self._engine(), self.source, position.file, position.pos, position.gtid_set,
                                     self.boundary_ts)
        self.saved = position
        self._sent_at_save = sink.sent if sink is not None else 0
        self._own_write_end = self._binlog_end()
        metrics.CHECKPOINTS.labels(self.source).inc()
        metrics.BINLOG_POSITION.labels(self.source).info({"file": position.file})
        metrics.BINLOG_OFFSET.labels(self.source).set(position.pos)
