"""Window scan: every key whose `utime` (pair.utime_column) changed since T, on both tables, through `check`.

In-process API (the daemon's scheduler runs it every `scheduler.window_scan_interval_s`):

    run_window_scan(settings, since, *, pair_name=None, engine=None) -> WindowReport

- `since`: a timezone-aware or UTC-naive `datetime`. For an integer `utime` column the bound is converted to
  epoch milliseconds when the column holds milliseconds (its largest value is above 10^11, as webook's
  `time.Now().UnixMilli()`), else to epoch seconds; DATETIME/TIMESTAMP columns are compared in UTC.
- Keys are read by keyset pages from both tables (`utime >= bound`), checked in `batch_max_keys` batches,
  mismatches re-checked (`rechecks` × `recheck_delay_s`), confirmed ones recorded (detected_by `window_scan`).
- Pairs whose `utime_column` is null are skipped (reported with `skipped`).

Limit: a hard-deleted source row leaves no `utime` behind, so a window scan cannot see that its online copy
is now an orphan; the incremental path (DELETE events) and the full scan do.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, quote_columns, quote_ident, quote_table
from cdc_repair.model.keys import pk_string
from cdc_repair.model.rules import source_spelled
from cdc_repair.model.verdict import Verdict
from cdc_repair.state import ledger
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate.check import check
from cdc_repair.validate.checksum import range_predicate
from cdc_repair.validate.confirm import Rechecks, RespelledOnce

PAGE = 5000
MAX_REPORTED = 100_000  # verdicts kept for the report; counts are exact beyond it
_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint", "decimal"})


@dataclass
class WindowPairResult:
    pair: str
    keys_checked: int = 0
    diffs: dict[str, int] = field(default_factory=dict)
    confirmed: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def differences(self) -> int:
        return sum(self.diffs.values())

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "keys_checked": self.keys_checked, "diffs": dict(self.diffs),
                "differences": self.differences, "seconds": round(self.seconds, 3), "skipped": self.skipped,
                "found": [{"key": list(v.key), "kind": v.kind, "columns": list(v.columns)} for v in self.confirmed]}


@dataclass
class WindowReport:
    since: dt.datetime
    pairs: list[WindowPairResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(p.differences for p in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"scan": "window", "since": self.since.isoformat(), "seconds": round(self.seconds, 3),
                "differences": self.differences, "pairs": [p.to_dict() for p in self.pairs]}


def run_window_scan(settings: Settings, since: dt.datetime, *, pair_name: str | None = None,
                    engine: StateEngine | None = None) -> WindowReport:
    """Check every key changed since `since` on either side of each pair (see module docstring)."""
    if since.tzinfo is not None:
        since = since.astimezone(dt.UTC).replace(tzinfo=None)
    pairs = [settings.pair(pair_name)] if pair_name else list(settings.pairs)
    eng = engine or state_engine(settings.state.dsn)
    report = WindowReport(since)
    t0 = time.monotonic()
    try:
        for pair in pairs:
            report.pairs.append(_scan_pair(settings, eng, pair, since))
    finally:
        if engine is None:
            eng.dispose()
    report.seconds = time.monotonic() - t0
    return report


def _scan_pair(settings: Settings, engine: StateEngine, pair: PairConfig, since: dt.datetime) -> WindowPairResult:
    res = WindowPairResult(pair.name)
    if not pair.utime_column:
        res.skipped = "pair has no utime_column"
        return res
    t0 = time.monotonic()
    src = mysql.connect(settings.server_dsn(pair.source.server))
    tgt = mysql.connect(settings.server_dsn(pair.target.server))
    try:
        for conn in (src, tgt):
            mysql.execute(conn, Statement("SET SESSION time_zone = '+00:00'"))
        missing = _without_column(((src, pair.source.table), (tgt, pair.target.table)), pair.utime_column)
        if missing:  # the default `utime` on a table without it: skip this pair, scan the others
            res.skipped = (f"{missing} has no column '{pair.utime_column}' (set the pair's utime_column to its "
                           "update-time column, or null)")
            return res
        checker = KeyChecker(settings, engine, pair, src, tgt, "window_scan")
        s_bound = utime_bound(src, pair.source.table, pair.utime_column, since)
        t_bound = utime_bound(tgt, pair.target.table, pair.utime_column, since)
        for page in changed_keys_both(src, tgt, pair, s_bound, t_bound):
            checker.add(page)
        checker.drain()
        res.confirmed, res.diffs, res.keys_checked = checker.confirmed, checker.diffs, checker.checked
        metrics.SCAN_ROWS.labels(pair.name, "window").inc(checker.checked)
    finally:
        src.close()
        tgt.close()
    res.seconds = time.monotonic() - t0
    return res


def _without_column(tables: Sequence[tuple[mysql.Connection, str]], column: str) -> str | None:
    """The first existing table that has no `column` (None when every one has it; a missing table is not
    reported here: reading it fails with its own error)."""
    for conn, table in tables:
        schema, name = table.split(".", 1)
        row = mysql.fetch_one(conn, Statement("SELECT COUNT(*), SUM(COLUMN_NAME = %s) FROM information_schema.COLUMNS "
                                              "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (column, schema, name)))
        if row is not None and row[0] and not row[1]:
            return table
    return None


def utime_bound(conn: mysql.Connection, table: str, column: str, since: dt.datetime) -> Any:
    """`since` in the column's own representation (epoch ms / epoch s / UTC datetime)."""
    schema, name = table.split(".", 1)
    row = mysql.fetch_one(conn, Statement("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                                          "AND TABLE_NAME=%s AND COLUMN_NAME=%s", (schema, name, column)))
    kind = str(row[0]).lower() if row else ""
    if kind not in _INT_TYPES:
        return since
    epoch = since.replace(tzinfo=dt.UTC).timestamp()
    top = mysql.fetch_one(conn, Statement(f"SELECT MAX({quote_ident(column)}) FROM {quote_table(table)}"))
    millis = top is not None and top[0] is not None and int(top[0]) > 10**11
    return int(epoch * 1000) if millis else int(epoch)


def changed_keys(conn: mysql.Connection, table: str, key_cols: Sequence[str], column: str,
                 bound: Any, lower: tuple[Any, ...] | None = None,
                 upper: tuple[Any, ...] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Pages (keyset, PAGE keys each) of the keys in (lower, upper] with `column >= bound`."""
    last = lower
    order = quote_columns(key_cols)
    while True:
        pred, params = range_predicate(key_cols, last, upper)
        rows = mysql.fetch_all(conn, Statement(
            f"SELECT {order} FROM {quote_table(table)} WHERE {quote_ident(column)} >= %s AND {pred} "
            f"ORDER BY {order} LIMIT {PAGE}", (bound, *params)))
        if rows:
            yield [tuple(r) for r in rows]
        if len(rows) < PAGE:
            return
        last = tuple(rows[-1])


def changed_keys_both(src: mysql.Connection, tgt: mysql.Connection, pair: PairConfig, s_bound: Any,
                      t_bound: Any) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of the keys changed on either side, each key once (a key changed on both sides is one key).

    Walks the source's changed keys a page at a time; each page's key range (lower, upper] is then read from
    the target, and the two are merged by canonical key, so memory stays at about two pages whatever the window
    size. The server compares the range bounds (its collation orders the keys, not Python)."""
    assert pair.utime_column is not None
    t_table, column = pair.target.table, pair.utime_column
    lower: tuple[Any, ...] | None = None
    while True:
        page = next(changed_keys(src, pair.source.table, pair.key, column, s_bound, lower), [])
        upper = page[-1] if len(page) == PAGE else None
        seen = {pk_string(k) for k in page}
        for t_page in changed_keys(tgt, t_table, pair.key, column, t_bound, lower, upper):
            page += [k for k in t_page if pk_string(k) not in seen]
            if page:
                yield page
            page = []
        if page:
            yield page
        if upper is None:
            return
        lower = upper


class KeyChecker:
    """Check keys in batches, re-check mismatches without blocking between batches, record verdicts.

    `confirmed` keeps at most MAX_REPORTED verdicts (without row images); `diffs` counts all of them."""

    def __init__(self, settings: Settings, engine: StateEngine, pair: PairConfig, src: mysql.Connection,
                 tgt: mysql.Connection, detected_by: str) -> None:
        self.settings, self.engine, self.pair = settings, engine, pair
        self.src, self.tgt, self.detected_by = src, tgt, detected_by
        self.rechecks = Rechecks(settings.validator.rechecks, settings.validator.recheck_delay_s)
        self.confirmed: list[Verdict] = []
        self.diffs: dict[str, int] = {}
        self.checked = 0
        self.respelled = RespelledOnce(pair)

    def add(self, keys: Sequence[tuple[Any, ...]]) -> None:
        batch = self.settings.validator.batch_max_keys
        rows: set[str] = set()  # a key asked under two spellings of one row ('key10', 'KEY10') is one key
        for start in range(0, len(keys), batch):
            verdicts = self._check(keys[start:start + batch])
            rows.update(source_spelled(self.pair, v).pk for v in verdicts)
            self._done(verdicts, self.rechecks.add(verdicts, time.monotonic()))
            self.poll()
        self.checked += len(rows)

    def poll(self) -> None:
        due = self.rechecks.due(time.monotonic()).get(self.pair.name, [])
        batch = self.settings.validator.batch_max_keys
        for start in range(0, len(due), batch):
            verdicts = self._check(due[start:start + batch])
            self._done(verdicts, self.rechecks.feed(verdicts, time.monotonic()))

    def drain(self) -> None:
        while len(self.rechecks):
            nxt = self.rechecks.next_due()
            if nxt is not None:
                time.sleep(max(0.0, nxt - time.monotonic()))
            self.poll()

    def _check(self, keys: Sequence[tuple[Any, ...]]) -> list[Verdict]:
        verdicts = check(self.pair, keys, self.src, self.tgt, batch_size=self.settings.validator.batch_max_keys)
        _count(self.pair, verdicts, self.detected_by)
        return verdicts

    def _done(self, verdicts: list[Verdict], confirmed: list[Verdict]) -> None:
        consistent = [source_spelled(self.pair, v) for v in verdicts if not v.is_mismatch]
        confirmed = self.respelled.once([source_spelled(self.pair, v) for v in confirmed])
        _record(self.engine, consistent + confirmed, self.detected_by)
        for v in confirmed:
            metrics.CONFIRMED.labels(self.pair.name, v.kind).inc()
            self.diffs[v.kind] = self.diffs.get(v.kind, 0) + 1
            if len(self.confirmed) < MAX_REPORTED:
                self.confirmed.append(replace(v, source=None, target=None))


def check_keys(settings: Settings, pair: PairConfig, keys: Sequence[tuple[Any, ...]], *,
               engine: StateEngine | None = None, detected_by: str = "cli") -> tuple[list[Verdict], int]:
    """Check given keys now (with re-checks) and record: (confirmed mismatches, keys checked)."""
    eng = engine or state_engine(settings.state.dsn)
    src = mysql.connect(settings.server_dsn(pair.source.server))
    tgt = mysql.connect(settings.server_dsn(pair.target.server))
    try:
        return check_and_confirm(settings, eng, pair, keys, src, tgt, detected_by), len({pk_string(k) for k in keys})
    finally:
        src.close()
        tgt.close()
        if engine is None:
            eng.dispose()


def check_and_confirm(settings: Settings, engine: StateEngine, pair: PairConfig, keys: Sequence[tuple[Any, ...]],
                      src: mysql.Connection, tgt: mysql.Connection, detected_by: str) -> list[Verdict]:
    """Check keys, re-check mismatches until confirmed or consistent (blocking), record; return confirmed."""
    checker = KeyChecker(settings, engine, pair, src, tgt, detected_by)
    checker.add(keys)
    checker.drain()
    return checker.confirmed


def _count(pair: PairConfig, verdicts: list[Verdict], origin: str) -> None:
    metrics.KEYS_CHECKED.labels(pair.name, origin).inc(len(verdicts))
    for v in verdicts:
        metrics.VERDICTS.labels(pair.name, v.kind).inc()


def _record(engine: StateEngine, verdicts: list[Verdict], detected_by: str) -> None:
    if verdicts:
        ledger.record_verdicts(engine, verdicts, detected_by)
