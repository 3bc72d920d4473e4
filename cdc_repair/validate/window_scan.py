"""Window scan: every key whose `utime` (pair.utime_column) changed since T, on both tables, through `check`.

In-process API (the daemon's scheduler runs it every `scheduler.window_scan_interval_s`):

    run_window_scan(settings, since, *, pair_name=None, engine=None) -> WindowReport

- `since`: a timezone-aware or UTC-naive `datetime`. For an integer `utime` column the bound is converted to
  epoch milliseconds when the column holds milliseconds (its largest value is above 10^11, as webook's
  `time.Now().UnixMilli()`), else to epoch seconds; DATETIME/TIMESTAMP columns are compared in UTC.
- Keys are read by keyset pages from both tables (`utime >= bound`) and handed to the key confirmer
  (validate/confirmer.py: `batch_max_keys` batches, `rechecks` × `recheck_delay_s` re-checks, verdicts recorded
  with detected_by `window_scan`).
- Pairs whose `utime_column` is null are skipped (reported with `skipped`).

Limit: a hard-deleted source row leaves no `utime` behind, so a window scan cannot see that its online copy
is now an orphan; the incremental path (DELETE events) and the full scan do.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_repair import metrics
from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, quote_columns, quote_ident, quote_table
from cdc_repair.model.keys import pk_string
from cdc_repair.model.rules import source_spelled
from cdc_repair.model.verdict import Verdict
from cdc_repair.state.engine import StateEngine, state_engine
from cdc_repair.validate.checksum import range_predicate
from cdc_repair.validate.confirmer import KeyConfirmer, ledger_recorder

PAGE = 5000
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
        confirmer = KeyConfirmer.from_settings(settings, pair, lambda: (src, tgt),
                                               ledger_recorder(engine, "window_scan"), origin="window_scan")
        s_bound = utime_bound(src, pair.source.table, pair.utime_column, since)
        t_bound = utime_bound(tgt, pair.target.table, pair.utime_column, since)
        for page in changed_keys_both(src, tgt, pair, s_bound, t_bound):
            # a key asked under two spellings of one row ('key10', 'KEY10') is one key
            res.keys_checked += len({source_spelled(pair, v).pk for v in confirmer.check(page)})
        confirmer.drain()
        res.confirmed, res.diffs = confirmer.confirmed, confirmer.diffs
        metrics.SCAN_ROWS.labels(pair.name, "window").inc(res.keys_checked)
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
