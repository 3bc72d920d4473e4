"""Capture throughput: binlog → acknowledged Canal FlatMessages in Kafka, vs plain python-mysql-replication decode.

Writes the workload first (so the binlog is fixed), then measures, on the same binlog range:
  * baseline: `BinLogStreamReader` with default options (blocking=False), reading `.rows` of every rows event,
    no Kafka: the library's plain decode. Run before and after the tailers; the faster of the two runs is the
    baseline (a conservative ratio). Every measurement waits until the server is idle first (InnoDB purge after
    the writes competes for the 2 cores otherwise, and made the baseline vary by 1.5x);
  * tailer: the capture stage (`Tailer`, what `cdc-repair tail` runs, checkpoint every 1 s as in the daemon) in a
    subprocess of its own, starting at the range's first position; the clock runs from the moment it starts
    reading the binlog (process start-up, state schema and Kafka connection excluded; the replication connection
    included, as in the baseline) until it has read the range and
    the broker acknowledged (acks=all) every record it sent, seen by polling its produce futures every 5 ms
    (`tailer_seconds`). `tailer_seconds_to_checkpoint` runs until its saved checkpoint reaches the range end,
    which comes up to one checkpoint interval later. Peak RSS of the tailer process is reported.
    Run twice per workload: `per_transaction` (the default, Canal-faithful: a FlatMessage never holds rows of two
    transactions) and `across_transactions` (`capture.group_across_transactions: true`, the throughput option).
    Each run gets a new, empty broker: the embedded broker keeps everything in memory and slows down as it fills
    (a second 300 MB run on the same broker took up to 1.4x as long), which Apache Kafka does not.

Workloads on webook_author.articles (~1.5 KB rows): `insert` = multi-row INSERT batches; `update` = single-row
UPDATE transactions (autocommit). Prints one JSON document.

    .venv/bin/python bench/bench_capture.py [--rows 100000] [--txns 30000] [--batch 1000] [--checkpoint-interval 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql
import yaml
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
         "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
         "publish", "draft", "article", "author", "online", "reader"]


def text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def master_status(conn: Any) -> tuple[str, int]:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return str(row[0]), int(row[1])


def write_inserts(conn: Any, rows: int, batch: int, first_id: int) -> None:
    rng = random.Random(1)
    sql = "INSERT INTO webook_author.articles (id, author_id, title, content, status, ctime, utime) VALUES "
    with conn.cursor() as cur:
        for start in range(first_id, first_id + rows, batch):
            values = []
            params: list[Any] = []
            for i in range(start, min(start + batch, first_id + rows)):
                values.append("(%s,%s,%s,%s,%s,%s,%s)")
                params += [i, rng.randint(1, 1000), text(rng, 60), text(rng, 1450).encode(), 1, i, i]
            cur.execute(sql + ",".join(values), params)


def write_updates(conn: Any, txns: int, id_range: tuple[int, int]) -> None:
    rng = random.Random(2)
    with conn.cursor() as cur:
        for n in range(txns):
            cur.execute("UPDATE webook_author.articles SET title=%s, status=%s, utime=%s WHERE id=%s",
                        (text(rng, 60), 1 + n % 3, 10**9 + n, rng.randint(*id_range)))


def baseline(server: MariaDBServer, start: tuple[str, int], end: tuple[str, int]) -> dict[str, Any]:
    """python-mysql-replication with default options, rows only, no Kafka."""
    settings = {"host": "127.0.0.1", "port": server.port, "user": "root", "passwd": server.password}
    stream = BinLogStreamReader(connection_settings=settings, server_id=9101, resume_stream=True, blocking=False,
                                log_file=start[0], log_pos=start[1],
                                only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent])
    rows = 0
    t0 = time.perf_counter()
    for ev in stream:
        rows += len(ev.rows)
        if (stream.log_file, stream.log_pos) >= end:
            break
    elapsed = time.perf_counter() - t0
    stream.close()
    return {"rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed, 1)}


def run_tailer(config: str, interval_s: float, end: tuple[str, int]) -> None:
    """The subprocess: one Tailer until SIGTERM. Prints `READY <epoch s>` once its binlog stream is open and
    `ACKED <epoch s>` once it has read the binlog up to `end` and the broker acknowledged every record it sent
    (nothing left in its grouper or outbox, every produce future done and none failed): the end of the clock,
    found by polling every 5 ms instead of waiting for the next checkpoint save (up to `interval_s` later)."""
    import threading

    from cdc_repair.config import load_settings
    from cdc_repair.log import setup_logging
    from cdc_repair.source.tailer import Tailer

    setup_logging("plain", "WARNING")
    settings = load_settings(config)
    tailer = Tailer(settings, settings.capture[0], checkpoint_interval_s=interval_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def all_acked() -> bool:
        boundary, sink = tailer.checkpointer.boundary, tailer._sink
        if boundary is None or (boundary.file, boundary.pos) < end or sink is None:
            return False
        if tailer._grouper.pending or tailer._outbox.records:
            return False
        futures = list(sink._pending)
        return all(f.is_done and not f.failed() for f in futures)

    def announce() -> None:
        tailer.ready.wait()
        print(f"READY {time.time():.6f}", flush=True)
        while not stop.is_set() and not all_acked():
            time.sleep(0.005)
        print(f"ACKED {time.time():.6f}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    tailer.run(stop)


def stamp(path: Path, word: str) -> float | None:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(word + " "):
            return float(line.split()[1])
    return None


def tail(server: MariaDBServer, broker: Broker, workdir: Path, name: str, start: tuple[str, int],
         end: tuple[str, int], *, across_transactions: bool = False, interval_s: float = 1.0) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    dsn = server.dsn().to_url()
    for s in raw["servers"].values():
        s["dsn"] = dsn
    state_db = f"bench_state_{name}_{uuid.uuid4().hex[:6]}"
    raw["state"]["dsn"] = server.dsn(state_db).to_url()
    raw["kafka"]["bootstrap_servers"] = [broker.bootstrap]
    raw["kafka"]["topic"] = {"mode": "single", "name": f"bench-{name}-{uuid.uuid4().hex[:6]}"}
    raw["capture"][0]["start"] = {"file": start[0], "pos": start[1]}
    raw["capture"][0]["include"] = ["webook_author.articles"]
    raw["capture"][0]["group_across_transactions"] = across_transactions
    cfg = workdir / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - kept open for the child's lifetime
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-tailer", str(cfg), "--checkpoint-interval",
            str(interval_s), "--end", f"{end[0]}:{end[1]}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the tailer of this checkout, as the bench
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    conn = server.root_connection()
    t0 = t1 = None
    pos: tuple[str, int] | None = None
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT binlog_file, binlog_pos FROM `{state_db}`.checkpoint")
                    row = cur.fetchone()
            except pymysql.err.ProgrammingError:
                row = None
            now = time.time()
            if t0 is None:
                t0 = stamp(workdir / f"{name}.log", "READY")
            if row is not None:
                pos = (str(row[0]), int(row[1]))
                if t0 is not None and pos >= end:
                    t1 = now
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"tailer exited: see {workdir / (name + '.log')}")
            time.sleep(0.01)
    finally:
        rss_kb = peak_rss_kb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{state_db}`")
        conn.close()
    acked = stamp(workdir / f"{name}.log", "ACKED")
    if t0 is None or t1 is None or acked is None:
        raise RuntimeError(f"tailer did not reach {end} (checkpoint {pos}, acked {acked})")
    return {"seconds": round(acked - t0, 3), "seconds_to_checkpoint": round(t1 - t0, 3),
            "peak_rss_mb": round(rss_kb / 1024, 1)}


def wait_idle(server: MariaDBServer, timeout_s: float = 120.0) -> None:
    """Wait until the server's background work (InnoDB purge and flushing after the write workload) is done:
    on 2 cores it competes with whichever reader is measured, and by how much depends on when it runs."""
    deadline = time.monotonic() + timeout_s
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    while time.monotonic() < deadline:
        before = cpu_s()
        time.sleep(1.0)
        if cpu_s() - before < 0.03:
            return


def peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--txns", type=int, default=30000)
    ap.add_argument("--checkpoint-interval", type=float, default=1.0,
                    help="the tailer's checkpoint interval in seconds (the daemon's: 1)")
    ap.add_argument("--run-tailer", metavar="CONFIG", help=argparse.SUPPRESS)  # the tailer subprocess
    ap.add_argument("--end", help=argparse.SUPPRESS)  # its range end, file:pos
    args = ap.parse_args()
    if args.run_tailer:
        file, _, pos = args.end.rpartition(":")
        run_tailer(args.run_tailer, args.checkpoint_interval, (file, int(pos)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    server = MariaDBServer(workdir / "db", server_id=31, buffer_pool="1G").start()
    try:
        conn = server.root_connection()
        with conn.cursor() as cur:
            sql = (ROOT / "cdc_repair" / "resources" / "webook.sql").read_text()
            sql = "\n".join(ln for ln in sql.splitlines() if not ln.strip().startswith("--"))
            for stmt in sql.split(";"):
                if stmt.strip():
                    cur.execute(stmt)
        a0 = master_status(conn)
        t = time.perf_counter()
        write_inserts(conn, args.rows, args.batch, 1)
        write_s = time.perf_counter() - t
        a1 = master_status(conn)
        t = time.perf_counter()
        write_updates(conn, args.txns, (1, args.rows))
        upd_s = time.perf_counter() - t
        b1 = master_status(conn)
        result: dict[str, Any] = {"rows": args.rows, "batch": args.batch, "txns": args.txns,
                                  "checkpoint_interval_s": args.checkpoint_interval,
                                  "load_average_before": list(os.getloadavg()),
                                  "write_rows_per_s": round(args.rows / write_s), "write_txns_per_s":
                                  round(args.txns / upd_s)}
        for name, start, end, units in (("insert", a0, a1, args.rows), ("update", a1, b1, args.txns)):
            wait_idle(server)
            first = baseline(server, start, end)
            tailers = {}
            for mode in ("per_transaction", "across_transactions"):
                wait_idle(server)
                broker = Broker(workdir / f"broker-{name}-{mode}").start()  # an empty one: see the docstring
                try:
                    tailers[mode] = tail(server, broker, workdir, f"{name}_{mode}", start, end,
                                         across_transactions=mode == "across_transactions",
                                         interval_s=args.checkpoint_interval)
                finally:
                    broker.stop()
            wait_idle(server)
            second = baseline(server, start, end)
            base = min(first, second, key=lambda b: b["seconds"])  # the library's best run: a conservative ratio
            result[name] = {"baseline_pymysqlrepl": {**base, "runs_seconds": [first["seconds"], second["seconds"]]}}
            for mode, tailer in tailers.items():
                rate = units / tailer["seconds"]
                result[name][mode] = {
                    "tailer_seconds": tailer["seconds"],
                    "tailer_seconds_to_checkpoint": tailer["seconds_to_checkpoint"],
                    "tailer_peak_rss_mb": tailer["peak_rss_mb"],
                    ("tailer_rows_per_s" if name == "insert" else "tailer_txns_per_s"): round(rate, 1),
                    "tailer_rows_per_s_vs_baseline": round((base["rows"] / tailer["seconds"]) / base["rows_per_s"],
                                                           2),
                }
        result["load_average_after"] = list(os.getloadavg())
        print(json.dumps(result, indent=2))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the binlog of a run is ~1.6 GB


if __name__ == "__main__":
    main()
