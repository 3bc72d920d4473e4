"""Latency of the status page, /api/status and /metrics under a bounded local load; prints one JSON document.

Baselines, measured in the same run (this machine is shared and noisy, so ratios matter more than numbers):
* `/healthz` on the same server: the floor of the stdlib server (routing, headers, one small JSON body);
* prometheus_client's own exporter (`start_http_server`) serving the same registry: what /metrics would cost
  with the library's server instead of ours.

The status document is the real one (`runtime/status.py: build_status`) over a state database with a seeded
ledger, repair log and job runs, on an embedded MariaDB started for the run (`--no-db`: the static example).
Load: `--clients` keep-alive connections, `--requests` each, against 127.0.0.1 only; it stops by itself.

    .venv/bin/python bench/bench_web.py [--clients 4] [--requests 300] [--no-db]
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_repair import metrics  # noqa: E402
from cdc_repair.config import WebConfig  # noqa: E402
from cdc_repair.observe import initialise_metric_labels  # noqa: E402
from cdc_repair.web import start_web  # noqa: E402
from cdc_repair_dev.example_status import EXAMPLE_STATUS  # noqa: E402


def populate_registry(pairs: int = 3, tables: int = 6) -> None:
    """A realistic registry: a few pairs and tables, every type, histograms with observations."""
    names = [f"pair{i}" for i in range(pairs)]
    initialise_metric_labels(names, sources=["author", "online"])
    for t in range(tables):
        for kind in ("INSERT", "UPDATE", "DELETE"):
            metrics.CAPTURED_ROWS.labels(table=f"db.table{t}", type=kind).inc(1000 + t)
            metrics.CAPTURED_EVENTS.labels(table=f"db.table{t}", type=kind).inc(100 + t)
            metrics.CAPTURED_BYTES.labels(table=f"db.table{t}", type=kind).inc(100000 + t)
    for p in names:
        metrics.KEYS_CHECKED.labels(pair=p, origin="stream").inc(5000)
        metrics.DETECTION_LATENCY.labels(pair=p).observe(1.7)
        for kind in ("missing_in_target", "extra_in_target", "different"):
            metrics.OPEN_INCONSISTENCIES.labels(pair=p, kind=kind, status="open").set(3)
    for part in range(6):
        metrics.CONSUMER_LAG.labels(topic="cdc-repair.rows", partition=str(part)).set(part)
    for _ in range(100):
        metrics.PRODUCE_LATENCY.observe(0.004)
        metrics.REPAIR_LATENCY.labels(strategy="forward").observe(0.02)


def seeded_status_provider() -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """build_status over a seeded state database on an embedded MariaDB; returns (provider, cleanup)."""
    import datetime as dt

    from cdc_repair.config import settings_from_mapping
    from cdc_repair.runtime.status import build_status
    from cdc_repair.state import tables
    from cdc_repair.state.engine import state_engine
    from cdc_repair_dev.devservices.mariadb import MariaDBServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db = MariaDBServer(workdir / "db", server_id=91).start()
    import yaml

    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for server in raw["servers"].values():
        server["dsn"] = db.dsn().to_url()
    raw["state"]["dsn"] = db.dsn("bench_state").to_url()
    settings = settings_from_mapping(raw)
    engine = state_engine(settings.state.dsn)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    kinds = ("missing_in_target", "extra_in_target", "different")
    statuses = ("open", "failed", "repaired", "repaired")
    with engine.begin() as conn:
        conn.execute(tables.inconsistency.insert(), [
            {"pair": "articles", "pk": json.dumps([str(i)]), "kind": kinds[i % 3], "detected_by": "stream",
             "first_seen": now, "last_seen": now, "seen_count": 1, "status": statuses[i % 4], "attempts": 0,
             "updated_at": now} for i in range(5000)])
        conn.execute(tables.repair_log.insert(), [
            {"repair_id": f"r-{i}", "run_id": "run", "pair": "articles", "pk": json.dumps([str(i)]),
             "strategy": "forward", "action": "insert", "side": "target", "status": "applied", "created_at": now,
             "updated_at": now} for i in range(2000)])
        conn.execute(tables.job_run.insert(), [
            {"job": ("full_scan", "window_scan", "retry")[i % 3], "host": "h", "started_at": now, "finished_at": now,
             "outcome": "ok"} for i in range(500)])

    def cleanup() -> None:
        engine.dispose()
        db.stop()

    return (lambda: build_status(settings, engine)), cleanup


def load(host: str, port: int, path: str, clients: int, requests: int) -> dict[str, Any]:
    """`clients` threads × `requests` GETs on keep-alive connections; latency percentiles in ms."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    size = 0

    def client() -> None:
        nonlocal errors, size
        conn = http.client.HTTPConnection(host, port, timeout=10)
        mine: list[float] = []
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(resp.status)
                size = len(body)
            except Exception:
                with lock:
                    errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else -1.0

    return {"path": path, "requests": len(latencies), "errors": errors, "req_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else -1.0, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300, help="per client")
    parser.add_argument("--no-db", action="store_true", help="serve the static example document (no MariaDB)")
    args = parser.parse_args()
    if not (1 <= args.clients <= 32 and 1 <= args.requests <= 5000):
        parser.error("keep the load bounded: --clients 1..32, --requests 1..5000")

    populate_registry()
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    provider: Callable[[], dict[str, Any]] = lambda: dict(EXAMPLE_STATUS)  # noqa: E731
    if not args.no_db:
        provider, cleanup = seeded_status_provider()
    results: dict[str, Any] = {"clients": args.clients, "requests_per_client": args.requests,
                               "status_source": "static example" if args.no_db else "build_status on MariaDB"}
    try:
        web = start_web(WebConfig(port=0), provider, lambda: {"bench": True})
        uncached = start_web(WebConfig(port=0), provider, lambda: {"bench": True}, status_cache_s=0)
        from prometheus_client import start_http_server  # baseline only: the library's exporter

        lib_server, _lib_thread = start_http_server(0, addr="127.0.0.1", registry=metrics.REGISTRY)
        lib_port = lib_server.server_address[1]
        try:
            for path in ("/healthz", "/metrics", "/api/status", "/"):  # warm-up
                load("127.0.0.1", web.port, path, 1, 20)
            runs = {
                "healthz (baseline)": load("127.0.0.1", web.port, "/healthz", args.clients, args.requests),
                "metrics": load("127.0.0.1", web.port, "/metrics", args.clients, args.requests),
                "metrics via prometheus_client exporter (baseline)":
                    load("127.0.0.1", lib_port, "/metrics", args.clients, args.requests),
                "api_status (1 s cache)": load("127.0.0.1", web.port, "/api/status", args.clients, args.requests),
                "page (1 s cache)": load("127.0.0.1", web.port, "/", args.clients, args.requests),
                "page (no cache: a DB query per request)":
                    load("127.0.0.1", uncached.port, "/", args.clients, max(1, args.requests // 4)),
            }
        finally:
            web.stop()
            uncached.stop()
            lib_server.shutdown()
            lib_server.server_close()
        base = runs["healthz (baseline)"]["p50_ms"]
        lib = runs["metrics via prometheus_client exporter (baseline)"]["p50_ms"]
        results["runs"] = runs
        results["ratios"] = {
            "metrics_p50_vs_healthz": round(runs["metrics"]["p50_ms"] / base, 2),
            "metrics_p50_vs_prometheus_client": round(runs["metrics"]["p50_ms"] / lib, 2),
            "page_p50_vs_healthz": round(runs["page (1 s cache)"]["p50_ms"] / base, 2),
            "page_uncached_p50_vs_cached": round(runs["page (no cache: a DB query per request)"]["p50_ms"] /
                                                 runs["page (1 s cache)"]["p50_ms"], 2),
        }
        results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        cleanup()
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
