"""Full-scan speed: `cdc-repair validate --full` vs `pt-table-sync --print` vs the bare chunk-checksum queries.

One run, one embedded MariaDB (buffer pool 2G), a mirror pair of two tables of N rows (~1.5 KB each) in two
databases of the same server, with `--diff-ratio` of the rows divergent, split over every kind (missing in the
target, extra in the target, different title, different last byte of the BLOB). Measured, in this order:

  * ours: `cdc-repair --json validate --full --pair bench` as a subprocess (wall time, peak RSS via wait4);
    its findings must be exactly the planted rows;
  * bare: the same keyset chunking and COUNT + SUM(MD5) chunk queries on both sides (two connections, like
    ours) with a fixed chunk size = ours' average, and nothing else (no drill-down, no ledger, no progress);
  * pt-table-sync --print (Debian `percona-toolkit`), syncing the target to the source: its printed statements
    must name the same rows.

Prints one JSON document with the times and the ratios (pt / ours ≥ 2 and ours / bare ≤ 1.5 are the goals).

    .venv/bin/python bench/bench_full_scan.py [--rows 1000000] [--diff-ratio 0.001] [--skip-pt]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
import yaml

from cdc_repair.devservices.mariadb import MariaDBServer
from cdc_repair.validate import checksum as cs

ROOT = Path(__file__).resolve().parents[1]
DDL = """CREATE TABLE {db}.t (id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(255), content BLOB,
  status TINYINT, ctime BIGINT, utime BIGINT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def sql(conn: pymysql.connections.Connection, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return list(cur.fetchall())


def generate(conn: pymysql.connections.Connection, rows: int) -> float:
    """Both tables with `rows` identical rows (~1.5 KB: content = 44 × MD5(id)), by INSERT … SELECT from seq."""
    t0 = time.monotonic()
    for db in ("bs_a", "bs_o", "bs_state"):
        sql(conn, f"DROP DATABASE IF EXISTS {db}")
    for db in ("bs_a", "bs_o"):
        sql(conn, f"CREATE DATABASE {db}")
        sql(conn, DDL.format(db=db))
    step = 100_000
    for lo in range(1, rows + 1, step):
        hi = min(rows, lo + step - 1)
        sql(conn, "INSERT INTO bs_a.t SELECT seq, seq % 997, CONCAT('title ', seq), REPEAT(MD5(seq), 44), 2, seq, "
                  f"seq FROM seq_{lo}_to_{hi}")  # MariaDB SEQUENCE engine
        sql(conn, f"INSERT INTO bs_o.t SELECT * FROM bs_a.t WHERE id BETWEEN {lo} AND {hi}")
    return time.monotonic() - t0


def plant(conn: pymysql.connections.Connection, rows: int, ratio: float, seed: int = 11) -> dict[int, str]:
    n = max(4, int(rows * ratio))
    ids = random.Random(seed).sample(range(1, rows + 1), n)
    kinds: dict[int, str] = {}
    quarter = n // 4
    missing, extra, title, content = ids[:quarter], ids[quarter:2 * quarter], ids[2 * quarter:3 * quarter], \
        ids[3 * quarter:]
    marks = lambda xs: ",".join(str(x) for x in xs)  # noqa: E731
    sql(conn, f"DELETE FROM bs_o.t WHERE id IN ({marks(missing)})")
    sql(conn, f"DELETE FROM bs_a.t WHERE id IN ({marks(extra)})")
    sql(conn, f"UPDATE bs_o.t SET title = CONCAT(title, '!') WHERE id IN ({marks(title)})")
    sql(conn, f"UPDATE bs_o.t SET content = CONCAT(LEFT(content, LENGTH(content) - 1), 'Z') "
              f"WHERE id IN ({marks(content)})")
    kinds.update({i: "missing_in_target" for i in missing})
    kinds.update({i: "extra_in_target" for i in extra})
    kinds.update({i: "different" for i in [*title, *content]})
    return kinds


def write_config(server: MariaDBServer, path: Path) -> Path:
    dsn = server.dsn().to_url()
    raw = {"servers": {"db": {"dsn": dsn}}, "state": {"dsn": server.dsn("bs_state").to_url()},
           "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
           "pairs": [{"name": "bench", "kind": "mirror", "source": {"server": "db", "table": "bs_a.t"},
                      "target": {"server": "db", "table": "bs_o.t"}}],
           "log": {"format": "text", "level": "WARNING"}}
    path.write_text(yaml.safe_dump(raw))
    return path


def run_ours(config: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cdc_repair", "--config", str(config), "--json", "validate",
                             "--full", "--pair", "bench"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read())),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))]  # type: ignore[union-attr]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    for r in readers:
        r.join()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        raise SystemExit(f"validate failed ({code}): {b''.join(err_chunks).decode()[-2000:]}")
    doc = json.loads(b"".join(out_chunks))
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "exit": code, "report": doc}


def run_bare(server: MariaDBServer, chunk: int) -> dict[str, Any]:
    """Keyset chunks of `chunk` rows; COUNT + SUM(MD5) on both sides concurrently; nothing else."""
    conns = [server.root_connection(), server.root_connection()]
    types = {c: t for c, t in sql(conns[0], "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                                            "WHERE TABLE_SCHEMA='bs_a' AND TABLE_NAME='t'")}
    cols = [c for c in types if c != "id"]
    h = cs.row_hash(cols, types, crc_prehash=True)  # what ours uses on MariaDB ≥ 10.8
    t0 = time.monotonic()
    lower: tuple[Any, ...] | None = None
    chunks = 0
    results: list[Any] = [None, None]

    def one(i: int, table: str, lo: Any, up: Any) -> None:
        stmt = cs.chunk_checksum(table, ["id"], h, lo, up)
        results[i] = sql(conns[i], stmt.sql, stmt.params or None)

    while True:
        stmt = cs.nth_key("bs_a.t", ["id"], lower, None, chunk - 1)
        row = sql(conns[0], stmt.sql, stmt.params or None)
        upper = tuple(row[0]) if row else None
        threads = [threading.Thread(target=one, args=(0, "bs_a.t", lower, upper)),
                   threading.Thread(target=one, args=(1, "bs_o.t", lower, upper))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        chunks += 1
        if upper is None:
            break
        lower = upper
    for c in conns:
        c.close()
    return {"seconds": time.monotonic() - t0, "chunks": chunks, "chunk_rows": chunk}


_PT_ID = re.compile(r"`id`\s*=\s*'?(\d+)'?")
_PT_VALUES = re.compile(r"VALUES\s*\('?(\d+)'?")


def run_pt(server: MariaDBServer) -> dict[str, Any]:
    exe = shutil.which("pt-table-sync")
    if exe is None:
        return {"skipped": "pt-table-sync not installed (apt-get install -y percona-toolkit)"}
    src = f"h=127.0.0.1,P={server.port},u=root,p={server.password},D=bs_a,t=t"
    dst = "D=bs_o,t=t"
    t0 = time.monotonic()
    done = subprocess.run([exe, "--print", "--charset", "utf8mb4", src, dst], capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - t0
    statements = [ln for ln in done.stdout.splitlines() if re.match(r"^(DELETE|INSERT|REPLACE|UPDATE)\b", ln)]
    ids: dict[int, str] = {}
    for ln in statements:
        verb = ln.split()[0]
        m = _PT_ID.search(ln) if verb in ("DELETE", "UPDATE") else (_PT_VALUES.search(ln) or _PT_ID.search(ln))
        if m:
            ids[int(m.group(1))] = verb
    return {"seconds": seconds, "exit": done.returncode, "statements": len(statements), "ids": ids,
            "stderr": done.stderr[-500:]}


def start_server(datadir: Path, buffer_pool: str) -> MariaDBServer:
    """mariadb-install-db sometimes aborts on this busy shared machine: retry from a clean data dir."""
    for attempt in range(3):
        try:
            return MariaDBServer(datadir, buffer_pool=buffer_pool).start()
        except Exception:
            if attempt == 2:
                raise
            shutil.rmtree(datadir, ignore_errors=True)
            time.sleep(2)
    raise AssertionError("unreachable")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--diff-ratio", type=float, default=0.001)
    ap.add_argument("--skip-pt", action="store_true")
    ap.add_argument("--datadir", default=None, help="reuse a MariaDB data dir (default: a temporary one)")
    args = ap.parse_args()
    tmp = Path(args.datadir or tempfile.mkdtemp(prefix="bench-fullscan-"))
    server = start_server(tmp / "mariadb", "2G")
    try:
        conn = server.root_connection("mysql")  # seq_N_to_M tables need a current database
        gen_s = generate(conn, args.rows)
        planted = plant(conn, args.rows, args.diff_ratio)
        sql(conn, "ANALYZE TABLE bs_a.t, bs_o.t")
        conn.close()
        config = write_config(server, tmp / "bench.yaml")
        ours = run_ours(config)
        (pair,) = ours["report"]["pairs"]
        found = {int(f["key"][0]): f["kind"] for f in pair["found"]}
        avg_chunk = max(10, int(pair["rows"] / max(1, pair["chunks"])))
        bare = run_bare(server, avg_chunk)
        pt = {"skipped": "--skip-pt"} if args.skip_pt else run_pt(server)
        pt_ids = pt.pop("ids", None)
        result: dict[str, Any] = {
            "bench": "full_scan", "rows": args.rows, "planted": len(planted), "generate_s": round(gen_s, 1),
            "ours": {"seconds": round(ours["seconds"], 2), "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                     "rows_per_s": round(args.rows / ours["seconds"]), "exact": found == planted,
                     "found": len(found), "chunks": pair["chunks"], "dirty_chunks": pair["dirty_chunks"],
                     "bisections": pair["bisections"], "rows_compared": pair["rows_compared"],
                     "rows_checked": pair["rows_checked"], "scan_seconds": pair["seconds"]},
            "bare_checksums": {k: round(v, 2) if isinstance(v, float) else v for k, v in bare.items()},
            "pt_table_sync": {k: round(v, 2) if isinstance(v, float) else v for k, v in pt.items()},
            "ratio_ours_vs_bare": round(ours["seconds"] / bare["seconds"], 2),
        }
        if pt_ids is not None:
            result["pt_table_sync"]["same_rows"] = set(pt_ids) == set(planted)
            result["ratio_pt_vs_ours"] = round(pt["seconds"] / ours["seconds"], 2)
        print(json.dumps(result, indent=2))
    finally:
        server.stop()
        if args.datadir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
