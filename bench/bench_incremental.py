"""Incremental validation speed: keys checked per second by one consumer, and commit → confirmed latency.

One embedded MariaDB + tansu broker; article tables (~1.5 KB rows) seeded identical on both sides.

1. throughput: `--keys` FlatMessages (20 rows each, old commit times so no settle wait) are produced first; then
   one `IncrementalValidator` consumes them; keys/s = keys checked / time from its first to its last check.
   Baseline in the same run: `check()` called directly on the same keys in batches of `batch_max_keys`
   (no Kafka, no ledger) — the ratio shows the consumer's overhead.
2. latency: a writer makes `--rate` changes/s for `--seconds` s (publish-like: source then target; every
   `--bad-every`-th change updates the source only, so it must be confirmed), producing the FlatMessages a
   capture would (es = commit time). Latency = confirmed-and-durable time − commit time, per planted key;
   the goal is p99 ≤ settle_delay_s + recheck_delay_s + 1 s with the default validator settings.

    .venv/bin/python bench/bench_incremental.py [--rows 20000] [--keys 50000] [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.model.verdict import Verdict
from cdc_repair.sink.flat_message import FlatMessage, encode_flat_message
from cdc_repair.sink.kafka_admin import ensure_topics
from cdc_repair.sink.partitioning import partition_for
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.check import check
from cdc_repair.validate.consumer import IncrementalValidator
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

COLS = ("id", "author_id", "title", "content", "status", "ctime", "utime")
DDL = """CREATE TABLE {t} (id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(255), content BLOB,
  status TINYINT, ctime BIGINT, utime BIGINT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def settings_for(server: MariaDBServer, broker: Broker, topic: str, group: str) -> Settings:
    dsn = server.dsn().to_url()
    return settings_from_mapping({
        "servers": {"author": {"dsn": dsn}, "online": {"dsn": dsn}},
        "state": {"dsn": server.dsn("bi_state").to_url()},
        "kafka": {"bootstrap_servers": [broker.bootstrap], "topic": {"mode": "single", "name": topic},
                  "partitions": 3, "dead_letter_topic": f"{topic}.dlq", "consumer": {"group_id": group}},
        "pairs": [{"name": "articles", "kind": "publish", "source": {"server": "author", "table": "bi_a.articles"},
                   "target": {"server": "online", "table": "bi_o.articles"},
                   "columns": list(COLS), "compare": ["author_id", "title", "content", "status"],
                   "ignore": ["ctime", "utime"]}],
    })


def seed(server: MariaDBServer, rows: int) -> None:
    conn = server.root_connection("mysql")
    with conn.cursor() as cur:
        for db in ("bi_a", "bi_o", "bi_state"):
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute("CREATE DATABASE bi_a")
        cur.execute("CREATE DATABASE bi_o")
        cur.execute(DDL.format(t="bi_a.articles"))
        cur.execute(DDL.format(t="bi_o.articles"))
        cur.execute("INSERT INTO bi_a.articles SELECT seq, seq % 997, CONCAT('title ', seq), REPEAT(MD5(seq), 44), "
                    f"2, seq, seq FROM seq_1_to_{rows}")
        cur.execute("INSERT INTO bi_o.articles SELECT * FROM bi_a.articles")
    conn.close()


def message(db: str, rows: list[dict[str, Any]], es_ms: int, type_: str = "UPDATE") -> bytes:
    data = [{k: (v.decode("latin-1") if isinstance(v, bytes) else (None if v is None else str(v)))
             for k, v in r.items()} for r in rows]
    old = [{"utime": "0"} for _ in rows] if type_ == "UPDATE" else None
    return encode_flat_message(FlatMessage(database=db, table="articles", type=type_, data=data, old=old,
                                           pk_names=["id"], es=es_ms, ts=es_ms))


def throughput(settings: Settings, broker: Broker, rows: int, keys: int) -> dict[str, Any]:
    topic = settings.kafka.topic.name
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, batch_size=1 << 20,
                             max_request_size=16 << 20)
    es = int(time.time() * 1000) - 60_000
    sent = 0
    ids = list(range(1, rows + 1))
    groups: dict[int, list[dict[str, Any]]] = {}
    for n in range(keys):
        i = ids[n % len(ids)]
        groups.setdefault(partition_for([str(i)], 3), []).append({"id": i, "status": 2})
    for part, rs in groups.items():
        for j in range(0, len(rs), 20):
            producer.send(topic, message("bi_a", rs[j:j + 20], es), partition=part)
            sent += len(rs[j:j + 20])
    producer.flush()
    producer.close()

    # baseline: check() alone, same keys, same batch size
    conn = mysql.connect(settings.server_dsn("author"))
    pair = settings.pair("articles")
    t0 = time.monotonic()
    batch = settings.validator.batch_max_keys
    all_keys = [(ids[n % len(ids)],) for n in range(keys)]
    for j in range(0, len(all_keys), batch):
        check(pair, all_keys[j:j + batch], conn, conn, batch_size=batch)
    bare_s = time.monotonic() - t0
    conn.close()

    validator = IncrementalValidator(settings)
    stop = threading.Event()
    thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
    thread.start()
    first: float | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        h = validator.health()
        if first is None and h["keys_checked"] > 0:
            first = time.monotonic()
        if h["rows"] >= sent and h["pending_keys"] == 0:
            break
        time.sleep(0.02)
    end = time.monotonic()
    h = validator.health()
    stop.set()
    thread.join(30)
    span = end - (first or end)
    return {"messages_rows": sent, "keys_checked": h["keys_checked"], "seconds": round(span, 2),
            "keys_per_s": round(h["keys_checked"] / span) if span else None,
            "bare_check_keys_per_s": round(keys / bare_s), "ratio_bare_vs_consumer":
                round((keys / bare_s) / (h["keys_checked"] / span), 2) if span else None,
            "confirmed": h["confirmed"]}


def latency(settings: Settings, broker: Broker, server: MariaDBServer, rows: int, rate: float, seconds: float,
            bad_every: int, writers: int = 4) -> dict[str, Any]:
    topic = settings.kafka.topic.name
    confirmed_at: dict[str, float] = {}
    lock = threading.Lock()

    def on_confirmed(v: Verdict, _ts: float | None) -> None:
        with lock:
            confirmed_at.setdefault(v.pk, time.time())

    validator = IncrementalValidator(settings, on_confirmed=on_confirmed)
    stop = threading.Event()
    thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
    thread.start()
    while not validator.health()["assigned"]:
        time.sleep(0.1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=1)
    committed: dict[str, float] = {}
    counts = [0] * writers
    t0 = time.monotonic()

    def write(w: int) -> None:
        """Writer `w` of `writers`: ids ≡ w (mod writers), so one id is never written by two threads."""
        src = server.root_connection()
        tgt = server.root_connection()
        ids = [i for i in range(1, rows + 1) if i % writers == w]
        pending_target: list[tuple[float, dict[str, Any]]] = []
        per_writer = rate / writers
        n = 0
        while time.monotonic() - t0 < seconds:
            if n < (time.monotonic() - t0) * per_writer:
                i = ids[(n * 7919) % len(ids)]
                bad = (n * writers + w) % bad_every == bad_every - 1
                title = f"v{w}-{n}"
                with src.cursor() as cur:
                    cur.execute("UPDATE bi_a.articles SET title=%s WHERE id=%s", (title, i))
                commit = time.time()
                row = {"id": i, "author_id": i % 997, "title": title, "status": 2}
                producer.send(topic, message("bi_a", [row], int(commit * 1000)),
                              partition=partition_for([str(i)], 3))
                if bad:
                    with lock:
                        committed[f'["{i}"]'] = commit
                else:
                    pending_target.append((time.monotonic() + 0.05, row))
                n += 1
            while pending_target and pending_target[0][0] <= time.monotonic():
                _, row = pending_target.pop(0)
                with tgt.cursor() as cur:
                    cur.execute("UPDATE bi_o.articles SET title=%s WHERE id=%s", (row["title"], row["id"]))
                producer.send(topic, message("bi_o", [row], int(time.time() * 1000)),
                              partition=partition_for([str(row["id"])], 3))
            time.sleep(0.0002)
        for _, row in pending_target:
            with tgt.cursor() as cur:
                cur.execute("UPDATE bi_o.articles SET title=%s WHERE id=%s", (row["title"], row["id"]))
        counts[w] = n
        src.close()
        tgt.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.flush()
    n = sum(counts)
    achieved = n / (time.monotonic() - t0)
    v = settings.validator
    budget = v.settle_delay_s + v.recheck_delay_s + 1.0
    deadline = time.monotonic() + budget * 3 + 10
    while time.monotonic() < deadline:
        with lock:
            if all(pk in confirmed_at for pk in committed):
                break
        time.sleep(0.1)
    stop.set()
    thread.join(30)
    lat = sorted(confirmed_at[pk] - t for pk, t in committed.items() if pk in confirmed_at)
    missing = [pk for pk in committed if pk not in confirmed_at]
    # a bad key changed again by a later good write is legitimately never confirmed: count, don't hide
    p = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3)) if lat else (lambda q: None)
    return {"changes": n, "achieved_rate": round(achieved), "planted": len(committed), "confirmed": len(lat),
            "not_confirmed": len(missing), "p50_s": p(0.50), "p99_s": p(0.99),
            "max_s": round(lat[-1], 3) if lat else None, "mean_s": round(statistics.mean(lat), 3) if lat else None,
            "budget_s": budget, "p99_within_budget": bool(lat) and lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            <= budget, "false_confirmed": len(set(confirmed_at) - set(committed))}


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
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--keys", type=int, default=50000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--bad-every", type=int, default=50)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-incr-"))
    server = start_server(tmp / "mariadb", "1G")
    broker = Broker(tmp / "broker").start()
    try:
        seed(server, args.rows)
        out: dict[str, Any] = {"bench": "incremental", "rows": args.rows}
        for part in ("throughput", "latency"):
            topic = f"bi-{part}-{uuid.uuid4().hex[:6]}"
            ensure_topics([broker.bootstrap], [topic, f"{topic}.dlq"], 3, 1)
            settings = settings_for(server, broker, topic, f"g-{topic}")
            state_engine(settings.state.dsn).dispose()
            if part == "throughput":
                out["throughput"] = throughput(settings, broker, args.rows, args.keys)
            else:
                out["latency"] = latency(settings, broker, server, args.rows, args.rate, args.seconds,
                                         args.bad_every)
        print(json.dumps(out, indent=2))
    finally:
        broker.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
