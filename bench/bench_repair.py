"""Benchmark: batch repair of divergent rows with guards and undo records vs unguarded ODKU batches.

Setup (own embedded MariaDB unless --dsn): `articles` with N rows of ~--row-bytes each; `published_articles`
with 90 % of them changed (title/content) and 10 % missing, and a ledger entry per key. Then, in the same run
and alternating, `repeats` times each:
- guarded: `cdc-repair repair --execute` for every ledger entry (claim, re-read target+source, plan with the
  rules; per batch one round trip with the multi-row undo INSERT, the key check and one compare-and-set
  statement per row, then the after-image read (an undo after-image UPDATE only where the server stored
  something else); re-check, repair_log, ledger close);
- baseline: read the source rows and `INSERT … ON DUPLICATE KEY UPDATE` them into the target, 100 rows per
  statement, commit per batch (what baseline.md §5 measured at ~12k rows/s), no guard, no undo, no ledger.
Every run is verified: all N keys consistent afterwards. Besides wall time, each timed run's CPU seconds are
reported (this process and the embedded server): on a loaded machine their ratio moves far less than wall
time. Before every timed run (both modes) the script waits until InnoDB has purged the previous run's history
(`trx_rseg_history_len` < 1000, ≤ 15 s). Prints one JSON document, which says whether issue 13's target (ratio
>= 0.5) was met and the machine's load average.

    .venv/bin/python bench/bench_repair.py --rows 10000 --row-bytes 1500 --repeats 3
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

from cdc_repair.app.repair import run_repair
from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn, parse_dsn
from cdc_repair.db.sql import Statement
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.check import check
from cdc_repair_dev.devservices.mariadb import MariaDBServer

DDL = """CREATE TABLE {t} (id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(4096), content BLOB,
  status TINYINT, ctime BIGINT, utime BIGINT, KEY idx_utime (utime)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
COLS = ("id", "author_id", "title", "content", "status", "ctime", "utime")
TARGET_RATIO = 0.5  # issue 13: guarded repair at least half as fast as the unguarded ODKU batches, same run


def source_row(i: int, size: int) -> tuple[Any, ...]:
    body = (f"article {i} body " * (size // 16 + 1)).encode()[:size - 40]
    return (i, i % 97, f"title of article {i}", body, 2, 1_700_000_000 + i, 1_700_000_100 + i)


def insert_rows(conn: mysql.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), 200):
        chunk = rows[start:start + 200]
        one = "(" + ", ".join(["%s"] * len(COLS)) + ")"
        mysql.execute(conn, Statement(f"INSERT INTO {table} ({', '.join(COLS)}) VALUES "
                                      f"{', '.join([one] * len(chunk))}", tuple(v for r in chunk for v in r)))


def diverge(conn: mysql.Connection, prefix: str, n: int, size: int) -> None:
    """Target = 90 % changed rows, 10 % missing; ledger = one open entry per key."""
    tgt = f"{prefix}_o.published_articles"
    mysql.execute(conn, Statement(f"TRUNCATE {tgt}"))
    rows = []
    for i in range(1, n + 1):
        if i % 10 == 0:
            continue  # missing in target
        r = list(source_row(i, size))
        r[2] = f"old title {i}"
        r[3] = bytes(r[3])[::-1]
        rows.append(tuple(r))
    insert_rows(conn, tgt, rows)
    mysql.execute(conn, Statement(f"DELETE FROM {prefix}_state.inconsistency"))
    entries = []
    for i in range(1, n + 1):
        kind = "missing_in_target" if i % 10 == 0 else "different"
        entries.append((f'["{i}"]', kind))
    for start in range(0, len(entries), 1000):
        chunk = entries[start:start + 1000]
        one = ("('articles', %s, %s, '[]', 'cli', UTC_TIMESTAMP(), UTC_TIMESTAMP(), 1, 'open', 0, NULL, "
               "UTC_TIMESTAMP())")
        mysql.execute(conn, Statement(
            f"INSERT INTO {prefix}_state.inconsistency (pair, pk, kind, columns, detected_by, first_seen, "
            f"last_seen, seen_count, status, attempts, next_retry_at, updated_at) VALUES "
            f"{', '.join([one] * len(chunk))}", tuple(v for e in chunk for v in e)))


def settle(conn: mysql.Connection, max_s: float = 15.0) -> float:
    """Before each timed run (both modes): wait until InnoDB has purged the previous run's undo history, so a
    run does not pay for the purge of the one before it. Returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        row = mysql.fetch_one(conn, Statement("SELECT `COUNT` FROM information_schema.INNODB_METRICS "
                                              "WHERE NAME = 'trx_rseg_history_len'"))
        if row is None or int(row[0]) < 1000:
            break
        time.sleep(0.2)
    return time.perf_counter() - t0


def baseline(conn: mysql.Connection, prefix: str, n: int, batch: int) -> float:
    """Unguarded: SELECT source rows by id range, ODKU into the target, commit per batch."""
    t0 = time.perf_counter()
    upd = ", ".join(f"{c} = VALUES({c})" for c in COLS[1:])
    one = "(" + ", ".join(["%s"] * len(COLS)) + ")"
    for start in range(1, n + 1, batch):
        ids = list(range(start, min(n, start + batch - 1) + 1))
        rows = mysql.fetch_all(conn, Statement(
            f"SELECT {', '.join(COLS)} FROM {prefix}_a.articles WHERE id IN ({', '.join(['%s'] * len(ids))})",
            tuple(ids)))
        with mysql.transaction(conn):
            mysql.execute(conn, Statement(
                f"INSERT INTO {prefix}_o.published_articles ({', '.join(COLS)}) VALUES "
                f"{', '.join([one] * len(rows))} ON DUPLICATE KEY UPDATE {upd}", tuple(v for r in rows for v in r)))
    return time.perf_counter() - t0


def consistent(settings: Settings, dsn: Dsn, n: int) -> bool:
    conn = mysql.connect(dsn)
    try:
        verdicts = check(settings.pairs[0], [(i,) for i in range(1, n + 1)], conn, conn)
    finally:
        conn.close()
    return not any(v.is_mismatch for v in verdicts)


def cpu_seconds(server: MariaDBServer | None) -> tuple[float, float]:
    """(this process, the embedded server) CPU seconds so far: a measure the machine's load disturbs far less
    than wall time (the server's is 0 with --dsn)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    server_s = 0.0
    if server is not None and server.pid is not None:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return ru.ru_utime + ru.ru_stime, server_s


def timed(server: MariaDBServer | None, cpu: list[tuple[float, float]], fn: Any) -> float:
    """Run fn; return its wall seconds and append its (client, server) CPU seconds to `cpu`."""
    c0, t0 = cpu_seconds(server), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    c1 = cpu_seconds(server)
    cpu.append((c1[0] - c0[0], c1[1] - c0[1]))
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--row-bytes", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=100, help="repair.batch_size and the baseline's rows/statement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="repair.threads (batches applied concurrently)")
    ap.add_argument("--dsn", help="use this server instead of an embedded MariaDB (mysql://root:pw@host:port/)")
    args = ap.parse_args()

    server = None
    if args.dsn:
        dsn = parse_dsn(args.dsn)
    else:
        server = MariaDBServer(Path(tempfile.mkdtemp(prefix="bench-repair-")) / "db", server_id=77).start()
        dsn = server.dsn()
    prefix = f"b{uuid.uuid4().hex[:8]}"
    try:
        conn = mysql.connect(dsn)
        for db in ("a", "o"):
            mysql.execute(conn, Statement(f"CREATE DATABASE {prefix}_{db}"))
        mysql.execute(conn, Statement(DDL.format(t=f"{prefix}_a.articles")))
        mysql.execute(conn, Statement(DDL.format(t=f"{prefix}_o.published_articles")))
        insert_rows(conn, f"{prefix}_a.articles", [source_row(i, args.row_bytes) for i in range(1, args.rows + 1)])
        url = dsn.with_database(None).to_url()
        settings = settings_from_mapping({
            "servers": {"author": {"dsn": url}, "online": {"dsn": url}},
            "state": {"dsn": dsn.with_database(f"{prefix}_state").to_url()},
            "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
            "pairs": [{"name": "articles", "kind": "publish",
                       "source": {"server": "author", "table": f"{prefix}_a.articles"},
                       "target": {"server": "online", "table": f"{prefix}_o.published_articles"},
                       "key": ["id"], "compare": ["author_id", "title", "content", "status"],
                       "ignore": ["ctime", "utime"]}],
            "repair": {"batch_size": args.batch, "threads": args.threads},
        })
        state_engine(settings.state.dsn).dispose()
        load_before = os.getloadavg()
        guarded_s, baseline_s, checks, settled = [], [], [], []
        guarded_cpu: list[tuple[float, float]] = []
        baseline_cpu: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            diverge(conn, prefix, args.rows, args.row_bytes)
            settled.append(settle(conn))
            reports: list[Any] = []
            guarded_s.append(timed(server, guarded_cpu,
                                   lambda out=reports: out.append(run_repair(settings, mode="execute"))))
            checks.append(reports[0].count("repaired") == args.rows and consistent(settings, dsn, args.rows))
            diverge(conn, prefix, args.rows, args.row_bytes)
            settled.append(settle(conn))
            baseline_s.append(timed(server, baseline_cpu,
                                    lambda: baseline(conn, prefix, args.rows, args.batch)))
            checks.append(consistent(settings, dsn, args.rows))
        undo_rows = mysql.fetch_one(conn, Statement(f"SELECT COUNT(*) FROM {prefix}_o.undo_log"))
        g, b = statistics.median(guarded_s), statistics.median(baseline_s)
        doc = {
            "benchmark": "repair", "rows": args.rows, "row_bytes": args.row_bytes, "batch": args.batch,
            "threads": args.threads,
            "mix": "90% different, 10% missing_in_target", "repeats": args.repeats,
            "guarded_rows_per_s": round(args.rows / g), "guarded_seconds": [round(x, 3) for x in guarded_s],
            "baseline_odku_rows_per_s": round(args.rows / b), "baseline_seconds": [round(x, 3) for x in baseline_s],
            "ratio_guarded_to_baseline": round(b / g, 3),
            "target_ratio": TARGET_RATIO, "target_met": b / g >= TARGET_RATIO,
            "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpu_seconds_client_server": {"guarded": [[round(c, 2), round(v, 2)] for c, v in guarded_cpu],
                                          "baseline": [[round(c, 2), round(v, 2)] for c, v in baseline_cpu]},
            "cpu_ratio_baseline_to_guarded": round(sum(map(sum, baseline_cpu)) / max(1e-9, sum(map(sum, guarded_cpu))),
                                                   3),
            "undo_records_written": int(undo_rows[0]) if undo_rows else 0,
            "all_runs_verified_consistent": all(checks),
            "purge_wait_seconds": [round(x, 2) for x in settled],
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
            shutil.rmtree(server.datadir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
