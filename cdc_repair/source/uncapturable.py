"""Changes the binlog holds without full row images, and the server settings that cause them.

Why: capture publishes row images. DML logged as an SQL statement (`binlog_format` STATEMENT, or MIXED for
"safe" statements) and rows events with a partial image (`binlog_row_image` MINIMAL/NOBLOB) carry no full row,
so those changes cannot reach the stream. They must never be lost silently:

* statement DML on an included table: counted (`cdc_repair_source_uncapturable_events_total{reason="statement"}`),
  one warning line, a full validation requested (a `job_run` marker, state/scan_requests.py), and capture goes
  *not ready* (`health()["ready"]` False, `/readyz` 503) until that validation has run; capture continues.
* a partial row image: with `capture.on_partial_image: fail` (default) the tailer stops with a line that says
  what the server is set to *now* and names the way forward; with `skip_and_full_validate` the event is skipped
  and handled like statement DML.
* a compressed event (MariaDB `log_bin_compress`, MySQL `binlog_transaction_compression`, switched on while
  capture runs; the start-up check refuses them): capture cannot read it, so it is handled as a partial image.
* the server's own settings (REQUIRED) are checked every CHECK_EVERY_S while streaming: any other value → not
  ready with one line (nothing is lost yet; the events above are what lose changes).

The marker is durable before the event loop moves on, so a checkpoint can never pass an uncapturable change
whose full validation was not requested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cdc_repair import metrics
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.errors import CdcRepairError, SchemaDriftError
from cdc_repair.source.events import PartialRows, StatementRows
from cdc_repair.source.filters import TableMatcher

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
# a setting the server does not have (log_bin_compress on MySQL, binlog_transaction_compression on MariaDB) is skipped
REQUIRED = {"binlog_format": "ROW", "binlog_row_image": "FULL", "log_bin_compress": "OFF",
            "binlog_transaction_compression": "OFF"}
FIX = {"binlog_format": "SET GLOBAL binlog_format='ROW' and put binlog_format=ROW in my.cnf (and no client may "
                        "SET SESSION binlog_format)",
       "binlog_row_image": "SET GLOBAL binlog_row_image='FULL' and put binlog_row_image=FULL in my.cnf",
       "log_bin_compress": "SET GLOBAL log_bin_compress=OFF and put log_bin_compress=OFF in my.cnf",
       "binlog_transaction_compression": "SET GLOBAL binlog_transaction_compression=OFF, put it in my.cnf (and no "
                                         "client may SET SESSION binlog_transaction_compression)"}


def _scan_api() -> Any:
    from cdc_repair.state import scan_requests  # SQLAlchemy stays under state/

    return scan_requests


class UncapturableGuard:
    """The tailer's watch over uncapturable changes; `degraded` is the reason capture is not ready, or None."""

    def __init__(self, source: str, dsn: Dsn, matcher: TableMatcher, on_partial_image: str,
                 engine: Callable[[], Any]) -> None:
        self.source = source
        self.dsn = dsn
        self.matcher = matcher
        self.on_partial_image = on_partial_image
        self._engine = engine
        self._reasons: dict[str, str] = {}  # "settings" / "events" → one-line reason
        self._request_id: int | None = None
        self._resumed = False
        self._next_check = 0.0
        self._detail_prefix = f"capture {source}: uncapturable: "

    @property
    def degraded(self) -> str | None:
        return "; ".join(self._reasons.values()) or None

    # ------------------------------------------------------------------ events

    def on_statement(self, ev: StatementRows, after: object) -> None:
        tables = self._included(ev)
        if not tables:
            return
        metrics.CAPTURE_UNCAPTURABLE.labels(self.source, "statement").inc()
        self._uncapturable(f"{ev.dml.kind} on {', '.join(tables)} after {after} arrived as an SQL statement "
                           f"(binlog_format STATEMENT or MIXED on the server or in that client's session), not as "
                           f"row images, so capture cannot publish it. Fix: {FIX['binlog_format']}")

    def on_partial(self, ev: PartialRows, after: object) -> None:
        if ev.table == "*" and ev.database != "?" and not self.matcher.schema_included(ev.database):
            return  # a compressed statement of a schema capture does not include
        table = f"{ev.database}.{ev.table}"
        if self.on_partial_image != "skip_and_full_validate":
            raise SchemaDriftError(self._partial_error(ev, table, after))
        reason = "partial_image" if ev.setting == "binlog_row_image" else "compressed"
        metrics.CAPTURE_UNCAPTURABLE.labels(self.source, reason).inc()
        self._uncapturable(f"{ev.kind} on {table} after {after} {_unreadable(ev)} (written while {ev.setting} was "
                           f"not {REQUIRED[ev.setting]}); skipped (capture on_partial_image: skip_and_full_validate)")

    def _included(self, ev: StatementRows) -> list[str]:
        if not ev.dml.exact and (not ev.schema or self.matcher.schema_included(ev.schema)):
            return [f"{ev.schema or '?'}.* (tables not told apart: {ev.sql[:80]!r})"]
        return [f"{db}.{t}" for db, t in ev.dml.tables if self.matcher(db, t)]

    def _uncapturable(self, reason: str) -> None:
        """Request a full validation (durably, before the loop moves on) and go not ready; log once per incident."""
        api = _scan_api()
        self._request_id = api.request_full_scan_once(self._engine(), self._detail_prefix + reason,
                                                      self._request_id)
        if "events" not in self._reasons:
            log.warning("capture %s: %s. Requested a full validation of every pair (job_run %d); not ready until "
                        "it has run", self.source, reason, self._request_id)
        self._reasons["events"] = self._waiting()

    def _waiting(self) -> str:
        return f"uncapturable change(s), full validation requested (job_run {self._request_id}) and not yet run"

    def _partial_error(self, ev: PartialRows, table: str, after: object) -> str:
        setting, want = ev.setting, REQUIRED[ev.setting]
        now = self._settings().get(setting, "unknown").upper()
        head = (f"capture {self.source}: {ev.kind} on {table} after {after} {_unreadable(ev)}, which capture cannot "
                f"publish; ")
        way = ("set capture on_partial_image: skip_and_full_validate to skip such events and request a full "
               "validation of every pair (docs/capture.md)")
        if now == want:
            return head + f"{setting} is {want} now, but these events were written before that: {way}"
        return head + f"{setting} is {now} on the server: {FIX[setting]}; then {way}"

    # ------------------------------------------------------------------ periodic check

    def tick(self) -> None:
        """Every CHECK_EVERY_S: the server's settings, and whether the requested validation has run."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        if not self._resumed:  # a restarted tailer stays not ready while its earlier request is unanswered
            self._resumed = True
            self._request_id = self._request_id or _scan_api().newest_open_request(self._engine(),
                                                                                   self._detail_prefix)
            if self._request_id is not None:
                self._reasons["events"] = self._waiting()
        found = self._settings()
        bad = [f"{name} is {found[name].upper()} on the server (capture needs {want}): {FIX[name]}"
               for name, want in REQUIRED.items() if name in found and found[name].upper() != want]
        self._set("settings", "; ".join(bad) or None)
        if self._request_id is not None and "events" in self._reasons and \
                not _scan_api().request_open(self._engine(), self._request_id):
            self._set("events", None)

    def _set(self, key: str, reason: str | None) -> None:
        before = self._reasons.get(key)
        if reason == before:
            return
        if reason is None:
            del self._reasons[key]
            log.info("capture %s: %s", self.source, "server binlog settings are as capture needs again"
                     if key == "settings"
                     else "the requested full validation has run")
        else:
            self._reasons[key] = reason
            log.warning("capture %s: %s; not ready until fixed", self.source, reason)

    def _settings(self) -> dict[str, str]:
        """The server's values of the REQUIRED settings it has."""
        try:
            conn = mysql.connect(self.dsn.with_database(None), timeout_s=10)
            try:
                return mysql.fetch_variables(conn, list(REQUIRED))
            finally:
                conn.close()
        except (CdcRepairError, OSError, mysql.Error) as exc:  # the binlog stream reports an unreachable server itself
            log.debug("capture %s: settings check failed: %s", self.source, exc)
            return {}


def _unreadable(ev: PartialRows) -> str:
    return "has a partial row image" if ev.setting == "binlog_row_image" else "is a compressed event"
