"""Every Prometheus metric of the service, in one place (the only importer of prometheus_client).

Naming: `cdc_repair_<stage>_<what>_<unit>`, base units (seconds, bytes), counters end in `_total`.
Label sets are bounded: pair, table (configured tables only), kind, type, stage, role, strategy, job, outcome.
Stages import the metric objects they need from here; none creates its own.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from cdc_repair import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DETECTION_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900, 3600)

# ---- capture (source → Kafka)
BINLOG_LAG_SECONDS = Gauge("cdc_repair_source_lag_seconds",
                           "Now minus the commit time of the last produced binlog event (also when idle).",
                           ["source"], registry=REGISTRY)
BINLOG_LAG_BYTES = Gauge("cdc_repair_source_lag_bytes",
                         "Bytes between the server's current binlog position and the checkpoint.",
                         ["source"], registry=REGISTRY)
# The file is an info label (it changes once per rotation); the position is a gauge, because a label that
# changes every transaction would create a new Prometheus series each time (unbounded cardinality).
BINLOG_POSITION = Info("cdc_repair_source_position", "Binlog file of the tailer's checkpoint.",
                       ["source"], registry=REGISTRY)
BINLOG_OFFSET = Gauge("cdc_repair_source_position_bytes",
                      "Binlog position (byte offset in the file) of the checkpoint.", ["source"], registry=REGISTRY)
CAPTURED_EVENTS = Counter("cdc_repair_source_events_total", "Binlog row events captured.",
                          ["table", "type"], registry=REGISTRY)
CAPTURED_ROWS = Counter("cdc_repair_source_rows_total", "Row changes captured.", ["table", "type"],
                        registry=REGISTRY)
CAPTURED_BYTES = Counter("cdc_repair_source_bytes_total", "FlatMessage bytes produced.", ["table", "type"],
                         registry=REGISTRY)
BINLOG_PURGED = Counter("cdc_repair_source_binlog_purged_total",
                        "Times the checkpoint pointed into a purged binlog.", ["source"], registry=REGISTRY)
PRODUCE_LATENCY = Histogram("cdc_repair_sink_produce_latency_seconds",
                            "Time from send to broker acknowledgement of a produce batch.",
                            buckets=_LATENCY_BUCKETS, registry=REGISTRY)
PRODUCE_ERRORS = Counter("cdc_repair_sink_produce_errors_total", "Failed produce attempts (retried).",
                         ["reason"], registry=REGISTRY)
CHECKPOINTS = Counter("cdc_repair_source_checkpoints_total", "Checkpoints saved.", ["source"], registry=REGISTRY)
CAPTURE_OVERSIZED = Counter("cdc_repair_source_oversized_rows_total",
                            "Row changes published with oversized values replaced by the marker.", ["table"],
                            registry=REGISTRY)
CAPTURE_UNCAPTURABLE = Counter("cdc_repair_source_uncapturable_events_total",
                               "Changes of included tables the binlog holds without full row images (statement "
                               "DML, partial row image); each requests a full validation.", ["source", "reason"],
                               registry=REGISTRY)

# ---- validate
CONSUMER_LAG = Gauge("cdc_repair_validate_consumer_lag_messages",
                     "End offset minus committed offset, per partition held by this daemon's validator.",
                     ["topic", "partition"], registry=REGISTRY)
KEYS_CHECKED = Counter("cdc_repair_validate_keys_checked_total", "Keys checked.", ["pair", "origin"],
                       registry=REGISTRY)
VERDICTS = Counter("cdc_repair_validate_verdicts_total", "Verdicts by kind.", ["pair", "kind"], registry=REGISTRY)
CONFIRMED = Counter("cdc_repair_validate_confirmed_total", "Inconsistencies confirmed after re-checks.",
                    ["pair", "kind"], registry=REGISTRY)
OPEN_INCONSISTENCIES = Gauge("cdc_repair_ledger_open_inconsistencies",
                             "Ledger entries not yet repaired, by status (open/repairing/failed).",
                             ["pair", "kind", "status"], registry=REGISTRY)
DETECTION_LATENCY = Histogram("cdc_repair_validate_detection_latency_seconds",
                              "From the change's commit to its confirmed verdict.", ["pair"],
                              buckets=_DETECTION_BUCKETS, registry=REGISTRY)
DEAD_LETTERS = Counter("cdc_repair_validate_dead_letters_total", "Malformed messages sent to the dead-letter topic.",
                       ["reason"], registry=REGISTRY)
SCAN_ROWS = Counter("cdc_repair_scan_rows_total", "Rows covered by full/window scans.", ["pair", "scan"],
                    registry=REGISTRY)
SCAN_CHUNKS = Counter("cdc_repair_scan_chunks_total", "Chunks checksummed.", ["pair", "result"], registry=REGISTRY)
SCAN_PROGRESS = Gauge("cdc_repair_scan_progress_ratio", "Progress of the running full scan (0..1).", ["pair"],
                      registry=REGISTRY)
SCAN_ROWS_PER_SECOND = Gauge("cdc_repair_scan_rows_per_second", "Rows/s of the last or running full scan.",
                             ["pair"], registry=REGISTRY)
SCAN_THROTTLED = Counter("cdc_repair_scan_throttle_seconds_total", "Seconds a scan paused for server load.",
                         ["pair"], registry=REGISTRY)

# ---- repair
REPAIRS = Counter("cdc_repair_repair_actions_total",
                  "Repair actions by outcome (applied/failed/parked/guard_failed/left/dirty/refused).",
                  ["pair", "strategy", "outcome"], registry=REGISTRY)
REPAIR_LATENCY = Histogram("cdc_repair_repair_latency_seconds",
                           "Time to apply one repair (guarded write + undo record), one sample per applied repair: "
                           "its batch's transaction time divided by the batch's statements.",
                           ["strategy"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
ROLLBACKS = Counter("cdc_repair_repair_rollbacks_total", "Rollbacks by outcome (undone/skipped/dirty/forced).",
                    ["outcome"], registry=REGISTRY)

# ---- runtime
JOB_RUNS = Counter("cdc_repair_job_runs_total", "Scheduler job runs by outcome.", ["job", "outcome"],
                   registry=REGISTRY)
STAGE_RESTARTS = Counter("cdc_repair_stage_restarts_total", "Stage restarts after a failure.", ["stage"],
                         registry=REGISTRY)
STAGE_UP = Gauge("cdc_repair_stage_up",
                 "1 when the stage is running; one series per stage on every daemon, labelled with the daemon's role "
                 "(leader/standby): a leader-only stage is 0 on a standby by design.", ["stage", "role"],
                 registry=REGISTRY)
LEADER = Gauge("cdc_repair_leader", "1 when this daemon holds the leader lock.", registry=REGISTRY)
ERRORS = Counter("cdc_repair_errors_total", "Errors caught at a stage boundary (logged with stack, retried).",
                 ["stage", "kind"], registry=REGISTRY)
BUILD_INFO = Info("cdc_repair_build", "Version of the running service.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

# ---- refreshed from the state tables (cdc_repair/observe.py), so they survive restarts and count CLI work too
LEDGER_OLDEST_OPEN_SECONDS = Gauge("cdc_repair_ledger_oldest_open_age_seconds",
                                   "Age of the oldest ledger entry not yet repaired (0 when none).", ["pair"],
                                   registry=REGISTRY)
LEDGER_UP = Gauge("cdc_repair_ledger_up",
                  "1 when the last read of the ledger (state database) succeeded; 0 while it fails, and then the "
                  "ledger gauges are absent rather than 0.", registry=REGISTRY)
JOB_LAST_SUCCESS = Gauge("cdc_repair_job_last_success_timestamp_seconds",
                         "End time (epoch s) of the job's last successful run, from the job_run table.", ["job"],
                         registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type (served at /metrics)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
