"""The one check path: read the current source and target rows of a batch of keys, apply the rules.

Public, stable API (the repairer and every validator path call it):

    check(pair, keys, source_conn, target_conn, *, batch_size=500) -> list[Verdict]

- `keys`: an iterable of key tuples (values in the pair's `key` column order; strings from Kafka or typed
  values from the DB both work: MySQL converts on comparison). Duplicates are checked once.
- `source_conn` / `target_conn`: connections from `db.mysql.connect` (may be the same connection, or two
  servers). One `SELECT … WHERE key IN (...)` per side per `batch_size` keys.
- Returns one `Verdict` per distinct key, in first-seen order, including `ok` and `not_applicable`.
- Raises what `db.mysql` raises, classified (`TransientError` for lost connections / lock waits).

`select_rows(...)` and `rows_by_pk(...)` are the read half, usable alone (e.g. to fetch rows for a repair).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdc_repair.config import PairConfig
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, placeholders, quote_columns, quote_ident, quote_table
from cdc_repair.model.keys import pk_string, rows_by_requested_key
from cdc_repair.model.rules import evaluate, needed_columns
from cdc_repair.model.verdict import Verdict


def check(pair: PairConfig, keys: Iterable[Sequence[Any]], source_conn: mysql.Connection,
          target_conn: mysql.Connection, *, batch_size: int = 500) -> list[Verdict]:
    """Verdicts for `keys` of `pair`, reading both sides now (see module docstring)."""
    unique: dict[str, tuple[Any, ...]] = {}
    for key in keys:
        key = tuple(key)
        if len(key) != len(pair.key):
            raise ValueError(f"pair '{pair.name}': key {key!r} has {len(key)} values, "
                             f"the pair's key has {len(pair.key)} ({', '.join(pair.key)})")
        unique.setdefault(pk_string(key), key)
    items = list(unique.items())
    out: list[Verdict] = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        wanted = dict(batch)
        src = rows_by_pk(pair, source_conn, pair.source.table, wanted)
        tgt = rows_by_pk(pair, target_conn, pair.target.table, wanted)
        for pk, key in batch:
            out.append(evaluate(pair, src.get(pk), tgt.get(pk), key))
    return out


def rows_by_pk(pair: PairConfig, conn: mysql.Connection, table: str,
               wanted: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Rows of `table` for the keys of `wanted` (pk_string → key), by the pk string of the requested key they
    answer (absent keys are absent from the result)."""
    if not wanted:
        return {}
    columns = needed_columns(pair)

    def fetch(batch: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        try:
            return mysql.fetch_dicts(conn, select_rows(table, pair.key, batch, columns))
        except Exception as exc:
            raise mysql.classify(exc, f"pair '{pair.name}': reading {table}") from exc

    return rows_by_requested_key(pair.key, wanted, fetch(list(wanted.values())), fetch)


def select_rows(table: str, key_cols: Sequence[str], keys: Sequence[Sequence[Any]],
                columns: Sequence[str] | None = None) -> Statement:
    """`SELECT cols FROM table WHERE key IN (...)` (row constructor for composite keys). Pure."""
    cols = quote_columns(columns) if columns else "*"
    where, params = key_in(key_cols, keys)
    return Statement(f"SELECT {cols} FROM {quote_table(table)} WHERE {where}", params)


def key_in(key_cols: Sequence[str], keys: Sequence[Sequence[Any]]) -> tuple[str, tuple[Any, ...]]:
    """A `key IN (...)` predicate and its parameters."""
    if len(key_cols) == 1:
        return (f"{quote_ident(key_cols[0])} IN ({placeholders(len(keys))})",
                tuple(k[0] for k in keys))
    one = f"({placeholders(len(key_cols))})"
    params = tuple(v for k in keys for v in k)
    return f"({quote_columns(key_cols)}) IN ({', '.join([one] * len(keys))})", params
