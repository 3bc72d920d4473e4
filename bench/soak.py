"""Soak: the demo workload against two daemons (real subprocesses) while faults are injected; prints JSON.

Faults, spread over `--duration` seconds: the tailer's binlog connection killed on the server (twice), the broker
frozen (SIGSTOP) for 10 s, the leader daemon killed with SIGKILL while a standby runs (a fresh standby is started
afterwards), and the MariaDB server (source, target and state) restarted.

At the end: the workload stops, the pipeline drains, and a full validation must find zero differences (up to
three drain+validate rounds, since differences found by a validation are then repaired). Checked and reported:
  differences of the final full validation, an independent contract check straight from the tables,
  row changes missing from Kafka (workload journal vs the whole topic, and the server's own binlog decoded by
  `mariadb-binlog` from the first daemon's start position vs the whole topic), repairs applied twice (undo records whose
  write changed nothing), overlapping job runs, leader takeover time after kill -9, and counts.

    .venv/bin/python bench/soak.py --duration 300
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import Settings, load_settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, quote_ident
from cdc_repair.runtime.jobs import find_overlaps
from cdc_repair.state import ledger, runs
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.audit import read_topic
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer
from cdc_repair_dev.harness import DaemonProcess, create_isolated_schema, isolated_raw_config
from cdc_repair_dev.workload import Workload, WorkloadConfig, contract_violations, missing_from_stream

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Soak:
    def __init__(self, root: Path, duration_s: float, rate: float) -> None:
        self.root = root
        self.duration_s = duration_s
        self.rate = rate
        self.db = MariaDBServer(root / "mariadb", server_id=1)
        self.broker = Broker(root / "broker")
        self.daemons: list[DaemonProcess] = []
        self.events: list[dict[str, Any]] = []
        self.settings: Settings | None = None
        self.config = root / "soak.yaml"

    # ------------------------------------------------------------------ set-up

    def start(self) -> Settings:
        self.db.start()
        self.broker.start()
        raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
        dsn = self.db.dsn().to_url()
        for server in raw["servers"].values():
            server["dsn"] = dsn
        raw["state"]["dsn"] = self.db.dsn("cdc_repair").to_url()
        raw["kafka"]["bootstrap_servers"] = [self.broker.bootstrap]
        raw = isolated_raw_config(raw, uuid.uuid4().hex[:6], server_id=random.randint(1000, 2**31))
        raw["web"] = {"enabled": True, "bind": "127.0.0.1", "port": 0}
        raw["ha"]["lock_retry_s"] = 1.0
        raw["scheduler"] = {"full_scan_cron": "* * * * *", "window_scan_interval_s": 30, "retry_interval_s": 5,
                            "lag_check_interval_s": 10, "misfire_grace_s": 30}
        self.config.write_text(yaml.safe_dump(raw, sort_keys=False))
        settings = load_settings(self.config)
        create_isolated_schema(settings)
        self.settings = settings
        return settings

    def spawn(self, name: str) -> DaemonProcess:
        d = DaemonProcess(self.config, self.root / f"{name}.log", name=name).start()
        self.daemons.append(d)
        return d

    def leader(self) -> DaemonProcess | None:
        for d in self.daemons:
            text = d.log_text()
            if d.alive() and text.count("elected leader") > text.count("leader lock lost"):
                return d
        return None

    def event(self, kind: str, **detail: Any) -> None:
        log(f"{kind} {detail}")
        self.events.append({"t": round(time.monotonic() - self.t0, 1), "fault": kind, **detail})

    # ------------------------------------------------------------------ faults

    def kill_tailer_connection(self) -> None:
        conn = self.db.root_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
                ids = [r[0] for r in cur.fetchall()]
                for conn_id in ids:
                    cur.execute(f"KILL {int(conn_id)}")
        finally:
            conn.close()
        self.event("tailer_connection_killed", connections=len(ids))

    def freeze_broker(self, seconds: float = 10.0) -> None:
        self.broker.freeze()
        self.event("broker_frozen", seconds=seconds)
        time.sleep(seconds)
        self.broker.thaw()

    def kill_leader(self) -> None:
        leader = self.leader()
        if leader is None:
            self.event("kill_leader_skipped", reason="no leader")
            return
        others = [d for d in self.daemons if d is not leader and d.alive()]
        before = {d.name: d.log_text().count("elected leader") for d in others}
        leader.kill()
        t_kill = time.monotonic()
        took = None
        while time.monotonic() - t_kill < 60:
            if any(d.log_text().count("elected leader") > before[d.name] for d in others):
                took = round(time.monotonic() - t_kill, 2)
                break
            time.sleep(0.1)
        self.event("leader_killed_9", daemon=leader.name, takeover_s=took)
        self.spawn(f"d{len(self.daemons) + 1}")

    def restart_server(self) -> None:
        t = time.monotonic()
        self.db.restart()
        self.event("server_restarted", took_s=round(time.monotonic() - t, 1))

    # ------------------------------------------------------------------ run

    def run(self) -> dict[str, Any]:
        settings = self.start()
        self.t0 = time.monotonic()
        a = self.spawn("d1")
        if not a.wait_for_log("streaming", 90):
            raise SystemExit(f"daemon d1 did not start streaming: {a.log_text()[-2000:]}")
        self.spawn("d2")
        workload = Workload(settings, WorkloadConfig(rate_per_s=self.rate, publish_fail_share=0.1,
                                                     corrupt_share=0.03, seed=11))
        stop = threading.Event()
        worker = threading.Thread(target=workload.run, args=(stop,), daemon=True)
        worker.start()
        d = self.duration_s
        plan = [(0.12, self.kill_tailer_connection), (0.25, self.freeze_broker), (0.42, self.kill_leader),
                (0.60, self.restart_server), (0.78, self.kill_tailer_connection)]
        for share, fault in plan:
            time.sleep(max(0.0, self.t0 + share * d - time.monotonic()))
            fault()
        time.sleep(max(0.0, self.t0 + d - time.monotonic()))
        stop.set()
        worker.join(30)
        log(f"workload stopped: {workload.stats.as_dict()}")
        return self.finish(settings, workload)

    def finish(self, settings: Settings, workload: Workload) -> dict[str, Any]:
        engine = state_engine(settings.state.dsn)
        from cdc_repair.validate.full_scan import run_full_scan

        rounds = []
        for _ in range(3):
            drained = self.drain(engine, settings)
            oracle = contract_violations(settings)
            report = run_full_scan(settings, None, resume=False, engine=engine)
            rounds.append({"drained": drained, "differences": report.differences,
                           "independent_check": {k: len(v) for k, v in oracle.items()},
                           "seconds": round(report.seconds, 2)})
            log(f"final validation round: {rounds[-1]}")
            if report.differences == 0:
                break
        final_oracle = {k: len(v) for k, v in contract_violations(settings).items()}
        messages = list(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topic.name, idle_s=5,
                                   max_s=600))
        missing = missing_from_stream(list(workload.journal), messages)
        binlog_missing = self.binlog_missing(settings, messages)
        all_runs = runs.all_runs(engine)
        overlaps = find_overlaps(all_runs)
        twice = repairs_applied_twice(settings)
        counts = {"|".join(k): n for k, n in sorted(ledger.counts(engine).items())}
        repair_counts = {"|".join(k): n for k, n in sorted(runs.repair_counts(engine).items())}
        job_counts: dict[str, int] = {}
        for r in all_runs:
            key = f"{r['job']}:{r['outcome']}"
            job_counts[key] = job_counts.get(key, 0) + 1
        engine.dispose()
        for dmn in self.daemons:
            dmn.stop(30)
        stage_failures = sum(1 for dmn in self.daemons for r in dmn.log_records()
                             if str(r.get("msg", "")).startswith("stage ") and " failed" in str(r.get("msg")))
        return {
            "duration_s": self.duration_s, "rate_per_s": self.rate,
            "workload": workload.stats.as_dict(), "row_changes_written": len(workload.journal),
            "kafka_messages": len(messages),
            "kafka_rows": sum(len(m.data or []) for m in messages),
            "faults": self.events,
            "final_differences": rounds[-1]["differences"], "validation_rounds": rounds,
            "independent_check_final": final_oracle,
            "row_changes_missing_from_kafka": len(missing), "missing_sample": [list(m) for m in missing[:5]],
            "binlog_row_changes_missing_from_kafka": len(binlog_missing), "binlog_missing_sample": binlog_missing[:5],
            "repairs_applied_twice": len(twice), "twice_sample": twice[:5],
            "overlapping_job_runs": len(overlaps), "overlap_sample": overlaps[:5],
            "ledger": counts, "repair_log": repair_counts, "job_runs": job_counts,
            "daemons_started": len(self.daemons), "stage_failures_logged": stage_failures,
            "ok": rounds[-1]["differences"] == 0 and not missing and not binlog_missing and not twice and not overlaps
            and sum(final_oracle.values()) == 0,
        }

    def binlog_missing(self, settings: Settings, messages: list[Any]) -> list[list[Any]]:
        """Row changes of the captured tables in the server's binlog (decoded by `mariadb-binlog`, independent of
        the tailer) from d1's start position, with fewer copies in the topic: (table, type, id, missing copies)."""
        started = re.search(r"from (\S+):(\d+) \(", self.daemons[0].log_text())
        if started is None:
            return [["d1 never logged its start position"]]
        index = (self.db.datadir / "binlog.index").read_text().split()
        files = [str(self.db.datadir / Path(f).name) for f in index]
        files = files[[Path(f).name for f in files].index(started.group(1)):]
        decoded = subprocess.run(["mariadb-binlog", "--no-defaults", "--base64-output=DECODE-ROWS", "--verbose",
                                  f"--start-position={started.group(2)}", *files],
                                 capture_output=True, text=True, errors="replace", check=True).stdout
        tables = {t for cap in settings.capture for t in cap.include}
        in_binlog = binlog_row_changes(decoded, tables)
        in_topic = Counter((f"{m.database}.{m.table}", m.type, int(r["id"])) for m in messages
                           if not m.is_ddl for r in (m.data or []) if r.get("id") is not None)
        return [[*k, n] for k, n in sorted((in_binlog - in_topic).items())]

    def drain(self, engine: Any, settings: Settings, timeout_s: float = 180.0) -> bool:
        """Quiet when the ledger has nothing active and the contract holds (or time runs out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = sum(n for (_p, _k, s), n in ledger.counts(engine).items() if s in ("open", "repairing"))
            if active == 0 and sum(len(v) for v in contract_violations(settings).values()) == 0:
                return True
            time.sleep(2)
        return False

    def close(self) -> None:
        for d in self.daemons:
            d.stop(10)
        self.broker.thaw()
        self.broker.stop()
        self.db.stop()


_ROWS_EVENT = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`")
_TYPES = {"INSERT INTO": "INSERT", "UPDATE": "UPDATE", "DELETE FROM": "DELETE"}


def binlog_row_changes(decoded: str, tables: set[str]) -> Counter[tuple[str, str, int]]:
    """(schema.table, type, id) of every row change in `mariadb-binlog --verbose` output (id is column @1: the
    after image of an INSERT/UPDATE, the before image of a DELETE)."""
    found: Counter[tuple[str, str, int]] = Counter()
    current: tuple[str, str] | None = None
    image = ""
    for line in decoded.splitlines():
        event = _ROWS_EVENT.match(line)
        if event:
            table = f"{event.group(2)}.{event.group(3)}"
            current = (table, _TYPES[event.group(1)]) if table in tables else None
            image = ""
        elif line in ("### SET", "### WHERE"):
            image = line[4:]
        elif current and line.startswith("###   @1="):
            kind = current[1]
            if (kind == "DELETE") == (image == "WHERE"):
                found[(current[0], kind, int(line.split("=", 1)[1].split()[0]))] += 1
    return found


def repairs_applied_twice(settings: Settings) -> list[str]:
    """Undo records whose write changed nothing (before image == after image): a repair applied to a row that
    was already repaired, i.e. applied twice. Read from every database a repair may write."""
    from cdc_repair.repair.undo_log import decode_image

    found: list[str] = []
    for pair in settings.pairs:
        for side in (pair.source, pair.target):
            conn = mysql.connect(settings.server_dsn(side.server))
            try:
                rows = mysql.fetch_all(conn, Statement(
                    f"SELECT xid, pk, before_image, after_image FROM {quote_ident(side.schema_name)}.`undo_log` "
                    "WHERE strategy <> 'rollback'"))
            except Exception as exc:
                if "1146" in str(exc):  # no undo_log table: nothing was repaired on this side
                    continue
                raise
            finally:
                conn.close()
            for xid, pk, before, after in rows:
                if decode_image(before) == decode_image(after):
                    found.append(f"{side.table} {pk} repair {xid}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of workload with faults")
    parser.add_argument("--rate", type=float, default=30.0, help="workload operations per second")
    parser.add_argument("--dir", type=Path, default=None, help="keep services and logs here")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="cdc-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    soak = Soak(root, args.duration, args.rate)
    try:
        result = soak.run()
    finally:
        soak.close()
    result["dir"] = str(root)
    print(json.dumps(result, indent=2, default=str))
    sys.exit(0 if result["ok"] else 2)


if __name__ == "__main__":
    main()
