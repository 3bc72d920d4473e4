"""The HTTP endpoint: /metrics, /healthz, /readyz, /api/status, /api/history, / and /static/*.

Stdlib `ThreadingHTTPServer` in a daemon thread: the service needs a handful of read-only routes, not a
framework. Providers are plain callables supplied by the daemon, so this module knows nothing about stages:

* `status_provider() -> dict` — the status document (`web/status_doc.py`); cached for `status_cache_s` so a
  busy page or scraper cannot turn into a query storm on the state database.
* `readiness_provider() -> dict[str, bool]` — one entry per stage and dependency; `/readyz` is 200 only when
  every entry is true (and there is at least one).

`/healthz` is liveness: 200 while the process serves requests. A down broker or database makes the service
*not ready* (503 on /readyz), not dead: restarting the process would not bring the broker back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from cdc_repair import metrics
from cdc_repair.config import Settings, WebConfig
from cdc_repair.errors import ConfigError
from cdc_repair.observe import LedgerGaugeStage, ReadinessProbe, dependency_checks, initialise_metric_labels
from cdc_repair.state.engine import StateEngine
from cdc_repair.web.history import History
from cdc_repair.web.page import render_page

log = logging.getLogger(__name__)

StatusProvider = Callable[[], dict[str, Any]]
ReadinessProvider = Callable[[], dict[str, bool]]

_STATIC_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def _static_files() -> dict[str, bytes]:
    """The vendored assets, read once (package data `web/static/*`)."""
    files: dict[str, bytes] = {}
    root = resources.files("cdc_repair.web").joinpath("static")
    for entry in root.iterdir():
        if entry.is_file() and any(entry.name.endswith(ext) for ext in _STATIC_TYPES):
            files[entry.name] = entry.read_bytes()
    return files


@dataclass
class _Cached:
    at: float
    value: dict[str, Any] | None
    error: str | None


class _StatusCache:
    """Calls the provider at most once per `ttl_s`, one call at a time.

    While a call is in flight, other callers get the previous document at once (stale while revalidating), so
    a hung state database blocks at most the one request that refreshes, never /readyz or the rest.
    Only the very first callers, with nothing cached yet, wait for the first document.
    """

    def __init__(self, provider: StatusProvider, ttl_s: float) -> None:
        self.provider = provider
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: _Cached | None = None

    def get(self) -> tuple[dict[str, Any] | None, str | None]:
        cached = self._cached
        if cached is not None and time.monotonic() - cached.at < self.ttl_s:
            return cached.value, cached.error
        if not self._lock.acquire(blocking=cached is None):
            assert cached is not None
            return cached.value, cached.error  # someone is refreshing: serve the previous document
        try:
            cached = self._cached
            now = time.monotonic()
            if cached is None or now - cached.at >= self.ttl_s:
                try:
                    cached = _Cached(time.monotonic(), self.provider(), None)
                except Exception as exc:  # the page shows the failure instead of dying
                    log.exception("building the status document failed: %s", exc)
                    metrics.ERRORS.labels(stage="web", kind=type(exc).__name__[:40]).inc()
                    cached = _Cached(time.monotonic(), None, f"status unavailable: {type(exc).__name__}: {exc}"[:300])
                self._cached = cached
            return cached.value, cached.error
        finally:
            self._lock.release()


class WebServer:
    """A running endpoint. `port` is the bound port (useful with `web.port: 0`); `stop()` closes it."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread, history: History,
                 probe: ReadinessProbe | None = None, background: list[threading.Event] | None = None) -> None:
        self._httpd = httpd
        self._thread = thread
        self._history = history
        self._probe = probe
        self._background = background or []  # stop events of the background threads

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        self._history.stop()
        if self._probe is not None:
            self._probe.stop()
        for stop_event in self._background:
            stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=timeout_s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    # set by start_web
    status: _StatusCache
    readiness_provider: ReadinessProvider
    probe: ReadinessProbe | None
    history: History
    static: dict[str, bytes]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "cdc-repair"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a keep-alive client's delayed ACK adds ~40 ms to
    # every response (bench/bench_web.py measured p50 44 ms for /healthz before this line, see benchmarks.md).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s " + format, self.address_string(), *args)

    # ---------------------------------------------------------------- plumbing

    def _send(self, status: int, body: bytes, content_type: str, *, head: bool = False,
              cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, head: bool) -> None:
        self._send(status, to_json(value), "application/json", head=head)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    # ---------------------------------------------------------------- routes

    def _route(self, head: bool) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                body, ctype = metrics.exposition()
                self._send(200, body, ctype, head=head)
            elif path == "/healthz":
                self._json(200, {"status": "ok"}, head)
            elif path == "/readyz":
                self._readyz(head)
            elif path == "/api/status":
                doc, error = self.server.status.get()
                if doc is None:
                    self._json(503, {"error": error}, head)
                else:
                    self._json(200, doc, head)
            elif path == "/api/history":
                self._json(200, self.server.history.as_dict(), head)
            elif path in ("/", "/index.html"):
                self._page(head)
            elif path.startswith("/static/") and path[len("/static/"):] in self.server.static:
                name = path[len("/static/"):]
                ctype = next(t for ext, t in _STATIC_TYPES.items() if name.endswith(ext))
                self._send(200, self.server.static[name], ctype, head=head, cache="public, max-age=3600")
            else:
                self._send(404, b"not found: see / for the status page\n", "text/plain; charset=utf-8", head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer

    def readiness(self) -> tuple[bool, dict[str, bool], str | None]:
        try:
            checks = {str(k): bool(v) for k, v in self.server.readiness_provider().items()}
        except Exception as exc:  # a failing provider means "not ready", with the reason
            log.exception("readiness provider failed: %s", exc)
            return False, {}, f"{type(exc).__name__}: {exc}"[:300]
        return bool(checks) and all(checks.values()), checks, None

    def _readyz(self, head: bool) -> None:
        ready, checks, error = self.readiness()
        body: dict[str, Any] = {"ready": ready, "checks": checks,
                                "not_ready": sorted(k for k, v in checks.items() if not v)}
        if error:
            body["error"] = error
        body["reasons"] = self.reasons(checks)
        self._json(200 if ready else 503, body, head)

    def reasons(self, checks: dict[str, bool]) -> dict[str, str]:
        """Why each failing check fails: a dependency's probe result or a stage's state and last error; a
        failing check never goes without a reason."""
        found = dict(self.server.probe.reasons()) if self.server.probe is not None else {}
        doc, error = self.server.status.get()
        found.update(stage_reasons(doc))
        if error:
            found.setdefault("status", error)
        return {k: found.get(k) or "not ready (no reason reported)" for k, ok in checks.items() if not ok}

    def _page(self, head: bool) -> None:
        doc, error = self.server.status.get()
        _, checks, ready_error = self.readiness()
        reasons = self.reasons(checks)
        html = render_page(doc or {}, checks, error=error or ready_error, reasons=reasons)
        self._send(200 if doc is not None else 503, html.encode(), "text/html; charset=utf-8", head=head)


def stage_readiness(doc: dict[str, Any] | None) -> dict[str, bool]:
    """Readiness of each stage from the status document; leader-only stages count only on the leader."""
    if doc is None:
        return {"status": False}
    leader = doc.get("leader")
    out: dict[str, bool] = {}
    for stage in doc.get("stages") or []:
        if not isinstance(stage, dict) or "name" not in stage:
            continue
        if stage.get("leader_only") and leader is False:
            continue  # a follower's stand-by stages are stopped on purpose
        ready = stage.get("ready")
        out[str(stage["name"])] = bool(ready) if isinstance(ready, bool) else stage.get("status") == "running"
    return out


def stage_reasons(doc: dict[str, Any] | None) -> dict[str, str]:
    """Per stage that is not ready: its state and its last error (the stage's own or from its health)."""
    out: dict[str, str] = {}
    for stage in (doc or {}).get("stages") or []:
        if not isinstance(stage, dict) or "name" not in stage:
            continue
        raw_health = stage.get("health")
        health: dict[str, Any] = raw_health if isinstance(raw_health, dict) else {}
        error = stage.get("last_error") or health.get("last_error")
        status = stage.get("status", "unknown")
        if status != "running":
            out[str(stage["name"])] = f"stage {status}" + (f": {error}" if error else "")
        elif stage.get("ready") is False or health.get("ready") is False:
            out[str(stage["name"])] = (f"running, not ready: {error}" if error
                                       else "running, not ready yet (no error reported)")
    return out


def start_web(web_cfg: WebConfig | Settings, status_provider: StatusProvider,
              readiness_provider: ReadinessProvider | None = None, *, status_cache_s: float = 1.0,
              history_interval_s: float = 1.0, probe_interval_s: float = 2.0,
              ledger_refresh_s: float | None = 2.0, engine: StateEngine | None = None) -> WebServer:
    """Bind `web.bind:web.port` (port 0: any free port) and serve in a daemon thread.

    `web_cfg` is the `web` section, or the whole Settings. Without a `readiness_provider`, readiness is each
    stage's (from the status document's `stages`) plus, when Settings were given, a background probe of the
    broker and every database (`observe.ReadinessProbe`).
    With Settings, it also initialises the bounded metric labels (pairs, sources); with Settings and `engine`
    (the caller's state engine, never disposed here) it refreshes the ledger gauges from the state database
    every `ledger_refresh_s` (None: the caller runs `LedgerGaugeStage` itself).
    Raises ConfigError naming the address when it cannot bind (port in use, unknown address).
    The caller decides whether to start it at all (`web.enabled`).
    """
    settings = web_cfg if isinstance(web_cfg, Settings) else None
    web_cfg = settings.web if settings is not None else web_cfg
    assert isinstance(web_cfg, WebConfig)
    server_cls = _Server6 if ":" in web_cfg.bind else _Server
    try:
        httpd = server_cls((web_cfg.bind, web_cfg.port), _Handler)
    except OSError as exc:
        raise ConfigError([f"web: cannot listen on {web_cfg.bind}:{web_cfg.port} ({exc.strerror or exc}; "
                           f"set web.port to a free port, or web.enabled: false)"]) from None
    httpd.status = _StatusCache(status_provider, status_cache_s)
    probe = None
    if readiness_provider is None:
        if settings is not None:
            probe = ReadinessProbe(dependency_checks(settings), probe_interval_s).start()
        readiness_provider = _default_readiness(httpd.status, probe)
    httpd.readiness_provider = readiness_provider
    httpd.probe = probe
    httpd.history = History(history_interval_s).start()
    httpd.static = _static_files()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="web", daemon=True)
    thread.start()
    background = []
    if settings is not None:
        initialise_metric_labels([p.name for p in settings.pairs], sources=[c.server for c in settings.capture])
        if ledger_refresh_s and engine is not None:
            background.append(_start_ledger_gauges(engine, ledger_refresh_s))
    server = WebServer(httpd, thread, httpd.history, probe, background)
    log.info("status page and metrics on %s", server.url)
    warning = exposure_warning(web_cfg.bind)
    if warning:
        log.warning("%s", warning)
    return server


def exposure_warning(bind: str) -> str | None:
    """A warning when the page listens beyond this host: it has no authentication and shows the topology."""
    try:
        loopback = ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        loopback = bind.lower() == "localhost"
    if loopback:
        return None
    return (f"web.bind is {bind}: the status page, /api/status and /metrics have no authentication and are "
            "reachable from other hosts; bind 127.0.0.1 and put an authenticating proxy in front, or restrict "
            "the port with a firewall")


def _default_readiness(status: _StatusCache, probe: ReadinessProbe | None) -> ReadinessProvider:
    def readiness() -> dict[str, bool]:
        doc, _error = status.get()
        checks = stage_readiness(doc)
        if probe is not None:
            checks.update(probe.snapshot())
        return checks

    return readiness


def _start_ledger_gauges(engine: StateEngine, interval_s: float) -> threading.Event:
    """Refresh the ledger gauges in a daemon thread, on the caller's engine; returns the thread's stop event."""
    stop = threading.Event()
    stage = LedgerGaugeStage(engine, interval_s)
    threading.Thread(target=stage.run, args=(stop,), name="ledger-gauges", daemon=True).start()
    return stop
