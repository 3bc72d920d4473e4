"""Full-scan speed: `cdc-repair validate --full` vs `pt-table-sync --print` vs the bare chunk-checksum queries.

One run, one embedded MariaDB (buffer pool 2G), for each `--rows` size (default 200,000 and 1,000,000): a mirror
pair of two tables of N rows (~1.5 KB each, `utf8mb4_general_ci`) in two databases of the same server, measured
first **identical**, then with planted differences of every hard kind, `--per-kind` rows each (default: N / 10,000):
trailing space and case in a `_ci` VARCHAR, NULL vs '', a NUL byte, one microsecond in a DATETIME(6), the last
BLOB byte, missing in the target, extra in the target, and one target row whose key (-5) is below the source's
range. For each case, in this order:

  * ours: `cdc-repair --json validate --full --pair bench` as a subprocess (wall time, peak RSS via wait4);
    its findings must be exactly the planted rows (nothing on identical tables);
  * bare: the same keyset chunks with COUNT + SUM(row hash) on both sides (two connections, concurrently) at a
    fixed chunk size (ours' average), nothing else: once with ours' row hash, once with the MD5 row hash;
  * pt-table-sync --print (Debian `percona-toolkit`), syncing the target to the source: its printed statements
    must name the same rows.

Prints one JSON document with the times, the ratios (pt / ours and ours / bare) and the 1-minute load average
before and after each case (this machine is shared: compare ratios of one run, never times across runs).

    .venv/bin/python bench/bench_full_scan.py [--rows 200000,1000000] [--per-kind N] [--skip-pt]
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

from cdc_repair.db.sql import Statement
from cdc_repair.validate import checksum as cs
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[1]
DDL = """CREATE TABLE {db}.t (id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(255), note VARCHAR(64),
  content BLOB, status TINYINT, mtime DATETIME(6), ctime BIGINT, utime BIGINT)
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""
DETAIL: dict[int, str] = {}  # planted id → the kind of change (for reports of what a tool missed)
KINDS = ("trailing_space", "case", "null_vs_empty", "nul_byte", "microsecond", "last_blob_byte", "missing",
         "extra")


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
        sql(conn, "INSERT INTO bs_a.t SELECT seq, seq % 997, CONCAT('title ', seq), NULL, REPEAT(MD5(seq), 44), 2, "
                  "TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL 123456 MICROSECOND, seq, seq "
                  f"FROM seq_{lo}_to_{hi}")  # MariaDB SEQUENCE engine
        sql(conn, f"INSERT INTO bs_o.t SELECT * FROM bs_a.t WHERE id BETWEEN {lo} AND {hi}")
    return time.monotonic() - t0


def plant(conn: pymysql.connections.Connection, rows: int, per_kind: int, seed: int = 11) -> dict[int, str]:
    """`per_kind` rows of each hard kind (see the module docstring), plus key -5 online only."""
    ids = random.Random(seed).sample(range(1, rows + 1), per_kind * len(KINDS))
    by_kind = {k: ids[i * per_kind:(i + 1) * per_kind] for i, k in enumerate(KINDS)}
    marks = lambda xs: ",".join(str(x) for x in xs)  # noqa: E731
    changes = {
        "trailing_space": "title = CONCAT(title, ' ')",  # equal to the _ci (PAD SPACE) collation
        "case": "title = UPPER(title)",  # equal to the _ci collation
        "null_vs_empty": "note = ''",
        "nul_byte": "title = CONCAT(LEFT(title, LENGTH(title) - 1), CHAR(0))",
        "microsecond": "mtime = mtime + INTERVAL 1 MICROSECOND",
        "last_blob_byte": "content = CONCAT(LEFT(content, LENGTH(content) - 1), 'Z')",
    }
    for kind, assignment in changes.items():
        sql(conn, f"UPDATE bs_o.t SET {assignment} WHERE id IN ({marks(by_kind[kind])})")
    sql(conn, f"DELETE FROM bs_o.t WHERE id IN ({marks(by_kind['missing'])})")
    sql(conn, f"DELETE FROM bs_a.t WHERE id IN ({marks(by_kind['extra'])})")
    sql(conn, "INSERT INTO bs_o.t SELECT -5, author_id, title, note, content, status, mtime, ctime, utime "
              "FROM bs_o.t WHERE id = (SELECT MIN(id) FROM bs_o.t)")
    DETAIL.clear()
    DETAIL.update({i: k for k, ids_ in by_kind.items() for i in ids_})
    DETAIL[-5] = "key_below_range"
    kinds = {i: "different" for k in changes for i in by_kind[k]}
    kinds.update({i: "missing_in_target" for i in by_kind["missing"]})
    kinds.update({i: "extra_in_target" for i in [*by_kind["extra"], -5]})
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


def run_bare(server: MariaDBServer, chunk: int, md5: bool) -> dict[str, Any]:
    """Keyset chunks of `chunk` rows; COUNT + SUM(row hash) on both sides concurrently; nothing else.
    `md5`: the MD5 row hash (the classic); else ours (see validate/checksum.py)."""
    conns = [server.root_connection(), server.root_connection()]
    types = {c: t for c, t in sql(conns[0], "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                                            "WHERE TABLE_SCHEMA='bs_a' AND TABLE_NAME='t'")}
    cols = list(types)
    h = cs.md5_row_hash(cols, types) if md5 else cs.row_hash(cols, types, crc32c=True)
    t0 = time.monotonic()
    lower: tuple[Any, ...] | None = None
    chunks = 0
    results: list[Any] = [None, None]

    def one(i: int, table: str, lo: Any, up: Any) -> None:
        if md5:  # the classic: COUNT + SUM of the first 64 bits of each row's MD5
            pred, params = cs.range_predicate(["id"], lo, up)
            stmt = Statement(f"SELECT COUNT(*), SUM({h.sql}) FROM {table} WHERE {pred}", params)
        else:
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


_PT_ID = re.compile(r"`id`\s*=\s*'?(-?\d+)'?")
_PT_VALUES = re.compile(r"VALUES\s*\('?(-?\d+)'?")


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


def measure(server: MariaDBServer, config: Path, planted: dict[int, str], skip_pt: bool) -> dict[str, Any]:
    """One case: ours, bare (ours' hash, MD5), pt-table-sync; each tool's findings against `planted`."""
    load_before = os.getloadavg()[0]
    ours = run_ours(config)
    (pair,) = ours["report"]["pairs"]
    found = {int(f["key"][0]): f["kind"] for f in pair["found"]}
    avg_chunk = max(10, int(pair["rows"] / max(1, pair["chunks"])))
    bare = run_bare(server, avg_chunk, md5=False)
    bare_md5 = run_bare(server, avg_chunk, md5=True)
    pt = {"skipped": "--skip-pt"} if skip_pt else run_pt(server)
    pt_ids = pt.pop("ids", None)
    wrong = {k: (DETAIL.get(k, planted.get(k)), found.get(k)) for k in planted.keys() | found.keys()
             if planted.get(k) != found.get(k)}
    out: dict[str, Any] = {
        "planted": len(planted),
        "ours": {"seconds": round(ours["seconds"], 2), "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                 "exact": not wrong, "wrong": dict(list(wrong.items())[:10]), "found": len(found),
                 "exit": ours["exit"], "chunks": pair["chunks"], "dirty_chunks": pair["dirty_chunks"],
                 "bisections": pair["bisections"], "rows_compared": pair["rows_compared"],
                 "rows_checked": pair["rows_checked"], "scan_seconds": pair["seconds"]},
        "bare_checksums": {k: round(v, 2) if isinstance(v, float) else v for k, v in bare.items()},
        "bare_md5_checksums": {k: round(v, 2) if isinstance(v, float) else v for k, v in bare_md5.items()},
        "pt_table_sync": {k: round(v, 2) if isinstance(v, float) else v for k, v in pt.items()},
        "ratio_ours_vs_bare": round(ours["seconds"] / bare["seconds"], 2),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before ours, after pt
    }
    if pt_ids is not None:
        out["pt_table_sync"]["same_rows"] = set(pt_ids) == set(planted)
        out["pt_table_sync"]["missed"] = {k: DETAIL.get(k, planted[k]) for k in sorted(set(planted) - set(pt_ids))[:10]}
        out["pt_table_sync"]["extra"] = sorted(set(pt_ids) - set(planted))[:10]
        out["ratio_pt_vs_ours"] = round(pt["seconds"] / ours["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="200000,1000000", help="comma-separated table sizes")
    ap.add_argument("--per-kind", type=int, default=None, help="planted rows per kind (default: rows / 10,000)")
    ap.add_argument("--skip-pt", action="store_true")
    ap.add_argument("--datadir", default=None, help="reuse a MariaDB data dir (default: a temporary one)")
    args = ap.parse_args()
    tmp = Path(args.datadir or tempfile.mkdtemp(prefix="bench-fullscan-"))
    server = start_server(tmp / "mariadb", "2G")
    results = []
    try:
        for rows in (int(r) for r in args.rows.split(",")):
            conn = server.root_connection("mysql")  # seq_N_to_M tables need a current database
            gen_s = generate(conn, rows)
            sql(conn, "ANALYZE TABLE bs_a.t, bs_o.t")
            config = write_config(server, tmp / "bench.yaml")
            identical = measure(server, config, {}, args.skip_pt)
            planted = plant(conn, rows, args.per_kind or max(1, rows // 10_000))
            sql(conn, "ANALYZE TABLE bs_a.t, bs_o.t")
            conn.close()
            results.append({"rows": rows, "generate_s": round(gen_s, 1), "identical": identical,
                            "planted": measure(server, config, planted, args.skip_pt)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        print(json.dumps({"bench": "full_scan", "kinds": [*KINDS, "key_below_range"], "runs": results}, indent=2))
    finally:
        server.stop()
        if args.datadir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
