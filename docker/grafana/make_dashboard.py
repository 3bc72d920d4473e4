"""Generate docker/grafana/dashboards/cdc-repair.json (run: python docker/grafana/make_dashboard.py).

The dashboard is code so its panels stay consistent (same datasource, units, legends); the JSON is committed
and provisioned by docker-compose. tests/unit/test_dashboard.py checks the committed file equals this output,
and tests/integration/test_prometheus.py runs every `expr` against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "cdc-repair.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
P = 'pair=~"$pair"'


def q(p: float, metric: str, by: str = "le", sel: str = "") -> str:
    return f"histogram_quantile({p}, sum by ({by}) (rate({metric}_bucket{sel}[{RI}])))"


# (title, type, unit, width, [(expr, legend)], description)
ROWS: list[tuple[str, list[tuple[str, str, str, int, list[tuple[str, str]], str]]]] = [
    ("Overview", [
        ("Open inconsistencies", "stat", "short", 4,
         [(f"sum(max by (pair, kind, status) (cdc_repair_ledger_open_inconsistencies{{{P}}}))", "open"),
          ("min(cdc_repair_ledger_up)", "ledger readable")],
         "Ledger entries not yet repaired (open, repairing, failed), refreshed from the state database "
         "(every daemon reports the same ledger: max, not sum, over instances). While the state database "
         "cannot be read, `ledger readable` is 0 and the count is absent (no data), never a false 0."),
        ("Oldest open inconsistency", "stat", "s", 4,
         [(f"max(cdc_repair_ledger_oldest_open_age_seconds{{{P}}})", "age")],
         "How long the oldest unrepaired entry has waited: alert when it exceeds your repair SLO."),
        ("Binlog lag", "stat", "s", 4, [("max(cdc_repair_source_lag_seconds)", "lag")],
         "Now minus the commit time of the last captured event, over all sources."),
        ("Consumer lag", "stat", "short", 4, [("sum(cdc_repair_validate_consumer_lag_messages)", "messages")],
         "Messages the validators have not consumed yet (approximate on tansu)."),
        ("Stages up", "stat", "short", 4, [("sum(cdc_repair_stage_up)", "up"), ("max(cdc_repair_leader)", "leader")],
         "Stages running and ready, and whether a daemon holds the leader lock (1)."),
        ("Dirty rollbacks", "stat", "short", 4,
         [('sum(cdc_repair_repair_rollbacks_total{outcome="dirty"})', "dirty")],
         "Rollbacks refused because the row changed after the repair: an operator must decide."),
    ]),
    ("Capture (binlog → Kafka)", [
        ("Binlog lag (seconds)", "timeseries", "s", 8,
         [("max by (source) (cdc_repair_source_lag_seconds)", "{{source}}")], ""),
        ("Binlog lag (bytes)", "timeseries", "bytes", 8,
         [("max by (source) (cdc_repair_source_lag_bytes)", "{{source}}")],
         "Bytes between the server's binlog end and the checkpoint."),
        ("Rows captured / s", "timeseries", "short", 8,
         [(f"sum by (table, type) (rate(cdc_repair_source_rows_total[{RI}]))", "{{table}} {{type}}")], ""),
        ("Events / s", "timeseries", "short", 8,
         [(f"sum by (table, type) (rate(cdc_repair_source_events_total[{RI}]))", "{{table}} {{type}}")], ""),
        ("Produced bytes / s", "timeseries", "Bps", 8,
         [(f"sum by (table) (rate(cdc_repair_source_bytes_total[{RI}]))", "{{table}}")], ""),
        ("Produce latency", "timeseries", "s", 8,
         [(q(0.5, "cdc_repair_sink_produce_latency_seconds"), "p50"),
          (q(0.99, "cdc_repair_sink_produce_latency_seconds"), "p99")], "Send to broker acknowledgement."),
        ("Produce errors / s", "timeseries", "short", 8,
         [(f"sum by (reason) (rate(cdc_repair_sink_produce_errors_total[{RI}]))", "{{reason}}")],
         "Failed produce attempts (each is retried)."),
        ("Checkpoints / s and purged binlogs", "timeseries", "short", 8,
         [(f"sum by (source) (rate(cdc_repair_source_checkpoints_total[{RI}]))", "checkpoints {{source}}"),
          ("sum by (source) (increase(cdc_repair_source_binlog_purged_total[$__range]))", "purged {{source}}")],
         "A purged binlog past the checkpoint forces a full validation."),
        ("Binlog position", "table", "none", 8,
         [("cdc_repair_source_position_info * on (source) group_left cdc_repair_source_position_bytes", "")],
         "Binlog file (info label) and position (value) of each tailer's checkpoint."),
        ("Oversized rows and uncapturable changes", "timeseries", "short", 8,
         [("sum by (table) (increase(cdc_repair_source_oversized_rows_total[$__range]))", "oversized {{table}}"),
          ("sum by (source, reason) (increase(cdc_repair_source_uncapturable_events_total[$__range]))",
           "{{reason}} {{source}}")],
         "Rows published with a marker (too large for Kafka), and changes without row images (statement DML, "
         "partial image): each requests a full validation."),
    ]),
    ("Validate", [
        ("Consumer lag by partition", "timeseries", "short", 8,
         [("sum by (topic, partition) (cdc_repair_validate_consumer_lag_messages)", "{{topic}}/{{partition}}")], ""),
        ("Keys checked / s", "timeseries", "short", 8,
         [(f"sum by (pair, origin) (rate(cdc_repair_validate_keys_checked_total{{{P}}}[{RI}]))",
           "{{pair}} {{origin}}")], ""),
        ("Verdicts / s by kind", "timeseries", "short", 8,
         [(f"sum by (pair, kind) (rate(cdc_repair_validate_verdicts_total{{{P}}}[{RI}]))", "{{pair}} {{kind}}"),
          (f"sum by (pair, kind) (rate(cdc_repair_validate_confirmed_total{{{P}}}[{RI}]))",
           "confirmed {{pair}} {{kind}}")], ""),
        ("Open inconsistencies by pair and kind", "timeseries", "short", 8,
         [(f"max by (pair, kind, status) (cdc_repair_ledger_open_inconsistencies{{{P}}})",
           "{{pair}} {{kind}} {{status}}")], "From the ledger (state table `inconsistency`)."),
        ("Detection latency (commit → confirmed)", "timeseries", "s", 8,
         [(q(0.5, "cdc_repair_validate_detection_latency_seconds", "le, pair", f"{{{P}}}"), "p50 {{pair}}"),
          (q(0.95, "cdc_repair_validate_detection_latency_seconds", "le, pair", f"{{{P}}}"), "p95 {{pair}}"),
          (q(0.99, "cdc_repair_validate_detection_latency_seconds", "le, pair", f"{{{P}}}"), "p99 {{pair}}")],
         "Includes the settle delay and re-checks."),
        ("Dead letters / s", "timeseries", "short", 8,
         [(f"sum by (reason) (rate(cdc_repair_validate_dead_letters_total[{RI}]))", "{{reason}}")],
         "Malformed messages sent to the dead-letter topic."),
    ]),
    ("Full scan", [
        ("Scan rows / s", "timeseries", "short", 6,
         [(f"max by (pair) (cdc_repair_scan_rows_per_second{{{P}}})", "{{pair}}"),
          (f"sum by (pair, scan) (rate(cdc_repair_scan_rows_total{{{P}}}[{RI}]))", "{{pair}} {{scan}} (rate)")], ""),
        ("Scan progress", "timeseries", "percentunit", 6,
         [(f"max by (pair) (cdc_repair_scan_progress_ratio{{{P}}})", "{{pair}}")], ""),
        ("Chunks / s by result", "timeseries", "short", 6,
         [(f"sum by (pair, result) (rate(cdc_repair_scan_chunks_total{{{P}}}[{RI}]))", "{{pair}} {{result}}")], ""),
        ("Throttled (s/s)", "timeseries", "percentunit", 6,
         [(f"sum by (pair) (rate(cdc_repair_scan_throttle_seconds_total{{{P}}}[{RI}]))", "{{pair}}")],
         "Fraction of time the scan paused for server load."),
    ]),
    ("Repair", [
        ("Repairs / s by strategy and outcome", "timeseries", "short", 8,
         [(f"sum by (strategy, outcome) (rate(cdc_repair_repair_actions_total{{{P}}}[{RI}]))",
           "{{strategy}} {{outcome}}")], "applied, failed (retried), parked (gave up), guard_failed (newer write)."),
        ("Repair latency", "timeseries", "s", 8,
         [(q(0.5, "cdc_repair_repair_latency_seconds", "le, strategy"), "p50 {{strategy}}"),
          (q(0.99, "cdc_repair_repair_latency_seconds", "le, strategy"), "p99 {{strategy}}")],
         "Guarded write plus undo record."),
        ("Rollbacks by outcome", "timeseries", "short", 8,
         [("sum by (outcome) (increase(cdc_repair_repair_rollbacks_total[$__range]))", "{{outcome}}")],
         "undone, skipped (already at before-image), dirty (needs an operator), forced."),
    ]),
    ("Runtime", [
        ("Stage up", "timeseries", "short", 6, [("max by (stage) (cdc_repair_stage_up)", "{{stage}}"),
                                                ("max(cdc_repair_leader)", "leader")], ""),
        ("Stage restarts", "timeseries", "short", 6,
         [("sum by (stage) (increase(cdc_repair_stage_restarts_total[$__range]))", "{{stage}}")], ""),
        ("Errors / s", "timeseries", "short", 6,
         [(f"sum by (stage, kind) (rate(cdc_repair_errors_total[{RI}]))", "{{stage}} {{kind}}")],
         "Errors caught at a stage boundary (logged with stack, retried)."),
        ("Job runs by outcome", "timeseries", "short", 6,
         [("sum by (job, outcome) (increase(cdc_repair_job_runs_total[$__range]))", "{{job}} {{outcome}}")], ""),
        ("Time since last successful job", "timeseries", "s", 12,
         [("time() - max by (job) (cdc_repair_job_last_success_timestamp_seconds)", "{{job}}")],
         "From the job_run table: alert when full_validation has not succeeded for a day."),
        ("Versions", "table", "none", 12, [("count by (version) (cdc_repair_build_info)", "")],
         "Running daemons by version."),
    ]),
]


def _panel(pid: int, title: str, kind: str, unit: str, w: int, x: int, y: int,
           targets: list[tuple[str, str]], description: str) -> dict[str, Any]:
    h = 4 if kind == "stat" else 8
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                     **({"format": "table", "instant": True} if kind == "table" else {})}
                    for i, (expr, legend) in enumerate(targets)],
        "options": {},
    }
    if kind == "stat":
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    elif kind == "timeseries":
        panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        panel["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "spanNulls": True}
    return panel


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x, row_h = pid + 1, y + 1, 0, 0
        for title, kind, unit, w, targets, description in row_panels:
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            panel = _panel(pid, title, kind, unit, w, x, y, targets, description)
            panels.append(panel)
            pid, x, row_h = pid + 1, x + w, max(row_h, panel["gridPos"]["h"])
        y += row_h
    return {
        "uid": "cdc-repair", "title": "cdc-repair", "description": "CDC consistency repair: lag, throughput, "
        "inconsistencies, repairs, latency percentiles, job runs, errors.",
        "tags": ["cdc-repair", "mysql", "kafka"], "timezone": "browser", "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "graphTooltip": 1, "fiscalYearStartMonth": 0, "liveNow": False, "links": [], "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
            {"name": "pair", "label": "Pair", "type": "query", "datasource": DS,
             "query": {"query": "label_values(cdc_repair_validate_keys_checked_total, pair)", "refId": "pair"},
             "definition": "label_values(cdc_repair_validate_keys_checked_total, pair)",
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0, "refresh": 2,
             "sort": 1, "regex": "", "options": []},
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
