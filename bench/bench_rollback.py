"""Benchmark: `rollback RUN` of a whole repair run vs the repair itself (same rows, same run of the script).

Setup (own embedded MariaDB with a 1 GB buffer pool unless --dsn): `articles` with N rows of ~--row-bytes each;
`published_articles` with 90 % of them changed (title/content) and 10 % missing, one ledger entry per key (as
bench_repair.py).
Then `repeats` times: `repair --execute` of every entry (timed: the baseline), `rollback <run id>` (timed),
verified byte for byte (every online row equals its value before the repair, the 10 % missing are gone again,
every ledger entry is open again), and a second `rollback <run id>` (timed; every repair `skipped`, nothing
changed: idempotent). Then the one-by-one baseline on the first --one-by-one-rows keys: repair them, roll them
back with `chunk=1, threads=1` (one repair per transaction, state records per row: the old way), verified the
same way. Prints one JSON document with rows/s, the ratios rollback / repair and rollback / one-by-one, whether
issue 13's target (>= 2,000 rows/s) was met, and the machine's load average.

    .venv/bin/python bench/bench_rollback.py --rows 20000 --row-bytes 1500 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_repair import COLS, DDL, cpu_seconds, diverge, insert_rows, settle, source_row

from cdc_repair.app.repair import run_repair
from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.db.dsn import parse_dsn
from cdc_repair.db.sql import Statement
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices.mariadb import MariaDBServer

TARGET_ROWS_PER_S = 2000  # issue 13: a rollback of a whole run at >= 2,000 rows/s


def snapshot(conn: mysql.Connection, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in mysql.fetch_all(conn, Statement(f"SELECT {', '.join(COLS)} FROM {table} ORDER BY id"))]


def fresh_logs(conn: mysql.Connection, prefix: str) -> None:
    """Each repeat starts with empty undo and repair logs (as after the cleanup job), so repeats do not grow them."""
    for schema, table in ((f"{prefix}_o", "undo_log"), (f"{prefix}_state", "repair_log"),
                          (f"{prefix}_state", "repair_run")):
        if mysql.fetch_one(conn, Statement("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                           "AND TABLE_NAME = %s", (schema, table))):
            mysql.execute(conn, Statement(f"TRUNCATE {schema}.{table}"))


def one_by_one(settings: Settings, conn: mysql.Connection, prefix: str, n: int, size: int,
               checks: list[bool]) -> float:
    """The old way on n keys: repair them, then roll back one repair per transaction. Returns its seconds."""
    tgt = f"{prefix}_o.published_articles"
    fresh_logs(conn, prefix)
    diverge(conn, prefix, n, size)
    mysql.execute(conn, Statement(f"DELETE FROM {tgt} WHERE id > %s", (n,)))
    before = snapshot(conn, tgt)
    report = run_repair(settings, mode="execute")
    checks.append(report.count("repaired") == n)
    settle(conn)
    store = StateStore(settings.state.dsn)
    try:
        t0 = time.perf_counter()
        back = rollback(settings, store, report.run_id, chunk=1, threads=1)
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    checks.append(all(i.outcome == "undone" for i in back.items) and snapshot(conn, tgt) == before)
    return seconds


def _spent(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    """(this process, the embedded server) CPU seconds between two `cpu_seconds` readings: on a loaded machine a
    steadier measure than wall time."""
    return after[0] - before[0], after[1] - before[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--row-bytes", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one-by-one-rows", type=int, default=2000, help="rows of the one-by-one baseline run")
    ap.add_argument("--buffer-pool", default="1G", help="the embedded MariaDB's innodb_buffer_pool_size")
    ap.add_argument("--dsn", help="use this server instead of an embedded MariaDB (mysql://root:pw@host:port/)")
    args = ap.parse_args()

    server = None
    if args.dsn:
        dsn = parse_dsn(args.dsn)
    else:
        server = MariaDBServer(Path(tempfile.mkdtemp(prefix="bench-rollback-")) / "db", server_id=78,
                               buffer_pool=args.buffer_pool).start()
        dsn = server.dsn()
    prefix = f"b{uuid.uuid4().hex[:8]}"
    tgt = f"{prefix}_o.published_articles"
    try:
        conn = mysql.connect(dsn)
        for db in ("a", "o"):
            mysql.execute(conn, Statement(f"CREATE DATABASE {prefix}_{db}"))
        mysql.execute(conn, Statement(DDL.format(t=f"{prefix}_a.articles")))
        mysql.execute(conn, Statement(DDL.format(t=tgt)))
        insert_rows(conn, f"{prefix}_a.articles", [source_row(i, args.row_bytes) for i in range(1, args.rows + 1)])
        url = dsn.with_database(None).to_url()
        settings = settings_from_mapping({
            "servers": {"author": {"dsn": url}, "online": {"dsn": url}},
            "state": {"dsn": dsn.with_database(f"{prefix}_state").to_url()},
            "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
            "pairs": [{"name": "articles", "kind": "publish",
                       "source": {"server": "author", "table": f"{prefix}_a.articles"},
                       "target": {"server": "online", "table": tgt},
                       "key": ["id"], "compare": ["author_id", "title", "content", "status"],
                       "ignore": ["ctime", "utime"]}],
        })
        state_engine(settings.state.dsn).dispose()
        load_before = os.getloadavg()
        repair_s, rollback_s, again_s, one_s, checks = [], [], [], [], []
        cpu: dict[str, list[tuple[float, float]]] = {"repair": [], "rollback": []}
        for _ in range(args.repeats):
            fresh_logs(conn, prefix)
            diverge(conn, prefix, args.rows, args.row_bytes)
            before = snapshot(conn, tgt)
            settle(conn)
            c0, t0 = cpu_seconds(server), time.perf_counter()
            report = run_repair(settings, mode="execute")
            repair_s.append(time.perf_counter() - t0)
            cpu["repair"].append(_spent(c0, cpu_seconds(server)))
            checks.append(report.count("repaired") == args.rows)
            settle(conn)
            store = StateStore(settings.state.dsn)
            try:
                c0, t0 = cpu_seconds(server), time.perf_counter()
                back = rollback(settings, store, report.run_id)
                rollback_s.append(time.perf_counter() - t0)
                cpu["rollback"].append(_spent(c0, cpu_seconds(server)))
                checks.append(back.exit_code == 0 and len(back.items) == args.rows
                              and all(i.outcome == "undone" for i in back.items))
                checks.append(snapshot(conn, tgt) == before)  # byte for byte
                reopened = mysql.fetch_one(conn, Statement(
                    f"SELECT COUNT(*) FROM {prefix}_state.inconsistency WHERE status = 'open'"))
                checks.append(reopened is not None and int(reopened[0]) == args.rows)
                t0 = time.perf_counter()
                again = rollback(settings, store, report.run_id)
                again_s.append(time.perf_counter() - t0)
                checks.append(all(i.outcome == "skipped" for i in again.items) and snapshot(conn, tgt) == before)
            finally:
                store.close()
            one_s.append(one_by_one(settings, conn, prefix, args.one_by_one_rows, args.row_bytes, checks))
        r, b = statistics.median(rollback_s), statistics.median(repair_s)
        o = statistics.median(one_s)
        doc = {
            "benchmark": "rollback", "rows": args.rows, "row_bytes": args.row_bytes, "repeats": args.repeats,
            "mix": "rollback of a run that repaired 90% different + 10% missing_in_target",
            "rollback_rows_per_s": round(args.rows / r), "rollback_seconds": [round(x, 3) for x in rollback_s],
            "baseline_repair_rows_per_s": round(args.rows / b), "repair_seconds": [round(x, 3) for x in repair_s],
            "ratio_rollback_to_repair": round(b / r, 3),
            "target_rows_per_s": TARGET_ROWS_PER_S, "target_met": args.rows / r >= TARGET_ROWS_PER_S,
            "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpu_seconds_client_server": {k: [[round(c, 2), round(v, 2)] for c, v in runs] for k, runs in cpu.items()},
            "second_rollback_seconds": [round(x, 3) for x in again_s],
            "baseline_one_by_one_rows": args.one_by_one_rows,
            "baseline_one_by_one_rows_per_s": round(args.one_by_one_rows / o),
            "one_by_one_seconds": [round(x, 3) for x in one_s],
            "ratio_rollback_to_one_by_one": round((args.rows / r) / (args.one_by_one_rows / o), 2),
            "all_runs_verified_byte_exact_and_idempotent": all(checks),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        for db in ("a", "o", "state"):
            mysql.execute(conn, Statement(f"DROP DATABASE IF EXISTS {prefix}_{db}"))
        conn.close()
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.datadir.parent, ignore_errors=True)  # ~3.8 GB of data and binlog per run


if __name__ == "__main__":
    main()
