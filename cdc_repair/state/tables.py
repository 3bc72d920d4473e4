"""State tables: the one place their shape is defined (pure metadata, no I/O).

`undo_log` is not here: it lives in the database of each repaired row (see `repair/undo_log.py`), so the
undo record commits in the same local transaction as the repair.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# One row per binlog source; written only at a transaction boundary after Kafka acked everything before it.
checkpoint = Table(
    "checkpoint",
    metadata,
    Column("source", String(64), primary_key=True),  # capture server name
    Column("binlog_file", String(255), nullable=False),
    Column("binlog_pos", BigInteger, nullable=False),
    Column("gtid_set", Text, nullable=True),
    Column("event_ts", Double, nullable=True),  # commit time (epoch s) of the last checkpointed txn (DOUBLE, not FLOAT)
    Column("updated_at", DateTime(timezone=False), nullable=False),
)

# The inconsistency ledger: one row per (pair, key); seeing it again updates, never duplicates.
inconsistency = Table(
    "inconsistency",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("pair", String(64), nullable=False),
    # canonical JSON array of key values as strings; binary collation: keys are compared exactly, like the
    # rest of the pipeline ("Case1" and "case1" are two ledger keys even where the tables' collation folds case)
    Column("pk", String(768, collation="utf8mb4_bin"), nullable=False),
    Column("kind", String(32), nullable=False),  # missing_in_target | extra_in_target | different
    Column("columns", JSON, nullable=True),  # differing columns
    Column("detected_by", String(32), nullable=False),  # stream | full_scan | window_scan | cli
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("seen_count", Integer, nullable=False, default=1),
    Column("status", String(16), nullable=False),  # open | repairing | repaired | failed | ignored
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_retry_at", DateTime, nullable=True),
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_at", DateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("source_event", JSON, nullable=True),  # last FlatMessage row images of the source (for compensation)
    Column("event_ts", Double, nullable=True),  # commit time (epoch s) of the change (DOUBLE: FLOAT loses ~100 s)
    Column("repair_id", String(64), nullable=True),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("pair", "pk", name="uq_inconsistency_pair_pk"),
    Index("ix_inconsistency_status_retry", "status", "next_retry_at"),
)

# One row per applied (or attempted) repair write; repair_id is the undo log's xid.
repair_log = Table(
    "repair_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("repair_id", String(64), nullable=False, unique=True),
    Column("run_id", String(64), nullable=False),
    Column("pair", String(64), nullable=False),
    Column("pk", String(768, collation="utf8mb4_bin"), nullable=False),
    Column("strategy", String(16), nullable=False),  # forward | compensate | rollback
    Column("action", String(32), nullable=False),  # insert | update | delete | set_status | ...
    Column("side", String(16), nullable=False),  # target | source
    Column("status", String(16), nullable=False),  # applied | failed | rolled_back | dirty | skipped
    Column("sql_text", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_repair_log_run", "run_id"),
)

# Repair runs that claim ledger entries, with a heartbeat: a re-run can tell whose claims are held and whether
# that run is dead (its process gone, or no heartbeat for repair.dead_after_s) and take them over.
repair_run = Table(
    "repair_run",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("token", String(128), nullable=False, unique=True),  # inconsistency.claimed_by of its claims
    Column("kind", String(16), nullable=False),  # cli | daemon
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running | finished | failed | taken_over
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("taken_over_by", String(64), nullable=True),
)

# Full-scan progress per pair and scan, so `validate --full --resume` skips finished chunks.
scan_progress = Table(
    "scan_progress",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("scan_id", String(64), nullable=False),
    Column("pair", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("last_key", String(768), nullable=True),  # canonical JSON of the last finished chunk's upper key
    Column("chunks", Integer, nullable=False, default=0),
    Column("rows", BigInteger, nullable=False, default=0),
    Column("diffs", Integer, nullable=False, default=0),
    Column("where_clause", Text, nullable=True),
    Column("rows_total", BigInteger, nullable=True),  # the row estimate at the start (status: done of total)
    Column("started_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    UniqueConstraint("scan_id", "pair", name="uq_scan_progress"),
)

# The keys each full scan confirmed as different, so a resumed scan reports the whole scan's differences, also
# those found before the interruption (read back through the ledger, whose status says if they are still open).
scan_finding = Table(
    "scan_finding",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("scan_id", String(64), nullable=False),
    Column("pair", String(64), nullable=False),
    Column("pk", String(768, collation="utf8mb4_bin"), nullable=False),
    Index("ix_scan_finding_scan", "scan_id", "pair"),
)

# Scheduler job runs (start, end, outcome), shown in status.
job_run = Table(
    "job_run",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("host", String(128), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("outcome", String(16), nullable=False),  # running | ok | failed | skipped
    Column("detail", Text, nullable=True),
    Index("ix_job_run_job_started", "job", "started_at"),
)

# Who holds the leader lock (`ha.lock_name`), written by the holder right after `GET_LOCK` on the lock's own
# connection. The named lock itself only tells a connection id; a row counts only while that id still holds it.
leader = Table(
    "leader",
    metadata,
    Column("lock_name", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("connection_id", BigInteger, nullable=False),
    Column("since", DateTime, nullable=False),
)
