"""Server checks for `check-config --connect` and for stage start-up: binlog settings, grants, tables, columns,
and that each pair's key is a PRIMARY or NOT NULL UNIQUE key on both sides (`require_unique_keys`, run at the
start of `run`, `validate` and `repair`).

The rules (`column_problems`, `key_problems`; binlog and grant rules in `db/server_checks.py`, which the tailer
shares) are pure; `connect_problems` does the I/O.
Every problem is one line: `path: what is wrong (the fix)`, with DSNs masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.server_checks import (
    REQUIRED_BINLOG,
    binlog_problems,
    fetch_grants,
    grant_problems,
    has_privilege,
    parse_grants,
)
from cdc_repair.db.sql import Statement
from cdc_repair.errors import CdcRepairError, ConfigError

UNDO_LOG = "undo_log"  # repair/undo_log.UNDO_TABLE: the undo records live beside each written table
_UNDO_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")  # write an undo record, read it back, mark it undone


def undo_log_problems(path: str, grants: Mapping[str, set[str]], schemas: Iterable[str],
                      existing: Iterable[str]) -> list[str]:
    """Each written schema's `undo_log` must be writable, and creatable while it does not exist yet.

    Without it no repair can run (every applied change leaves an undo record), so it is checked up front.
    """
    problems = []
    have = set(existing)
    for schema in sorted(set(schemas)):
        table = f"{schema}.{UNDO_LOG}"
        needed = [*_UNDO_PRIVILEGES, *(() if schema in have else ("CREATE",))]
        for priv in needed:
            if not has_privilege(grants, priv, table):
                why = " (the table does not exist yet)" if priv == "CREATE" else ""
                problems.append(f"{path}: missing {priv} on {table}{why} (GRANT {priv} ON {table} TO the user"
                                + (", or have a DBA create it" if priv == "CREATE" else "") + ")")
    return problems


def fetch_undo_schemas(conn: mysql.Connection, schemas: Iterable[str]) -> list[str]:
    """The schemas among `schemas` that already have an undo_log table."""
    wanted = sorted(set(schemas))
    if not wanted:
        return []
    marks = ", ".join(["%s"] * len(wanted))
    rows = mysql.fetch_all(conn, Statement(
        f"SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME=%s AND TABLE_SCHEMA IN ({marks})",
        (UNDO_LOG, *wanted)))
    return [str(r[0]) for r in rows]


def column_problems(path: str, pair: PairConfig, table: str, columns: list[str]) -> list[str]:
    """Key, compared, ignored and rule columns of `pair` that `table` does not have."""
    if not columns:
        return [f"{path}: table {table} does not exist (create it, or fix the table name)"]
    have = set(columns)
    shown = ", ".join(columns)
    wanted = list(pair.key) + pair.compare_columns(columns) + [
        c for r in pair.effective_rules() for c in [*r.when, *(r.columns or []), *r.target_values]]
    missing = sorted({c for c in wanted if c not in have}, key=wanted.index)
    return [f"{path}: table {table} has no column '{c}' (columns: {shown})" for c in missing]


@dataclass(frozen=True)
class IndexPart:
    """One column of one index, from information_schema.STATISTICS, with its column's nullability."""

    index: str
    unique: bool
    column: str
    nullable: bool


def key_problems(path: str, table: str, key: Sequence[str], parts: Iterable[IndexPart]) -> list[str]:
    """The pair's key must identify one row: some PRIMARY or UNIQUE index whose columns are all key columns and
    NOT NULL (a repair writes by key; on a non-unique key it would change or delete several rows)."""
    indexes: dict[str, list[IndexPart]] = {}
    for part in parts:
        indexes.setdefault(part.index, []).append(part)
    wanted = set(key)
    for cols in indexes.values():
        if cols[0].unique and {c.column for c in cols} <= wanted and not any(c.nullable for c in cols):
            return []
    unique = [f"{name}({', '.join(c.column for c in cols)})" for name, cols in indexes.items() if cols[0].unique]
    have = f"unique keys: {', '.join(unique)}" if unique else "no unique key"
    return [f"{path}: key ({', '.join(key)}) of {table} is not a PRIMARY KEY or a UNIQUE key of NOT NULL columns "
            f"({have}); repairs by this key could change or delete several rows (remove duplicate rows and ALTER "
            f"TABLE {table} ADD PRIMARY KEY ({', '.join(key)}), or set the pair's key to a unique key)"]


def fetch_index_parts(conn: mysql.Connection, table: str) -> list[IndexPart]:
    schema, name = table.split(".", 1)
    rows = mysql.fetch_all(conn, Statement(
        "SELECT s.INDEX_NAME, s.NON_UNIQUE, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s "
        "JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
        "AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = %s AND s.TABLE_NAME = %s "
        "ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX", (schema, name)))
    return [IndexPart(str(r[0]), int(r[1]) == 0, str(r[2]), str(r[3]).upper() == "YES") for r in rows]


def pair_key_problems(settings: Settings, pair_names: Iterable[str] | None = None) -> list[str]:
    """Key problems of the pairs (every pair by default) on both sides; one connection per server.
    An unreachable server raises (the caller decides); a missing table is left to the caller's own error."""
    names = set(pair_names) if pair_names is not None else None
    problems: list[str] = []
    conns: dict[str, mysql.Connection] = {}
    try:
        for i, pair in enumerate(settings.pairs):
            if names is not None and pair.name not in names:
                continue
            for side in ("source", "target"):
                ref = getattr(pair, side)
                if ref.server not in conns:
                    conns[ref.server] = mysql.connect(settings.server_dsn(ref.server), timeout_s=5)
                conn = conns[ref.server]
                try:
                    parts = fetch_index_parts(conn, ref.table) if fetch_columns(conn, ref.table) else None
                except Exception as exc:  # driver error: one classified line, never a traceback
                    raise mysql.classify(exc, f"checking the key of {ref.table}") from exc
                if parts is not None:
                    problems += key_problems(f"pairs[{i}].{side}.table", ref.table, pair.key, parts)
    finally:
        for conn in conns.values():
            conn.close()
    return problems


def require_unique_keys(settings: Settings, pair_names: Iterable[str] | None = None) -> None:
    """Refuse to start (ConfigError, one line per pair side) when a pair's key is not unique."""
    problems = pair_key_problems(settings, pair_names)
    if problems:
        raise ConfigError(problems)


def fetch_columns(conn: mysql.Connection, table: str) -> list[str]:
    schema, name = table.split(".", 1)
    rows = mysql.fetch_all(conn, Statement(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
        "ORDER BY ORDINAL_POSITION", (schema, name)))
    return [str(r[0]) for r in rows]


def connect_problems(settings: Settings) -> list[str]:
    """Every problem found by connecting to each server (and the broker); empty when all is well."""
    problems: list[str] = []
    for name, server in settings.servers.items():
        path = f"servers.{name}"
        try:
            conn = mysql.connect(server.dsn, timeout_s=5)
        except CdcRepairError as exc:
            problems.append(f"{path}.dsn: {exc}")
            continue
        try:
            problems += _server_problems(path, name, conn, settings)
        finally:
            conn.close()
    problems += _state_problems(settings)
    problems += broker_problems(settings)
    return problems


def _server_problems(path: str, name: str, conn: mysql.Connection, settings: Settings) -> list[str]:
    problems: list[str] = []
    captured = any(c.server == name for c in settings.capture)
    if captured:
        variables = mysql.fetch_variables(conn, ["log_bin", *REQUIRED_BINLOG])
        problems += binlog_problems(path, variables)
    reads = [p.source.table for p in settings.pairs if p.source.server == name]
    reads += [p.target.table for p in settings.pairs if p.target.server == name]
    writes = [p.target.table for p in settings.pairs if p.target.server == name]
    writes += [p.source.table for p in settings.pairs if p.source.server == name
               and (p.strategy or settings.repair.strategy) == "compensate"]
    grants = parse_grants(fetch_grants(conn))
    problems += grant_problems(path, grants, capture=captured, reads=reads, writes=writes)
    schemas = [t.split(".", 1)[0] for t in writes]
    problems += undo_log_problems(path, grants, schemas, fetch_undo_schemas(conn, schemas))
    for i, pair in enumerate(settings.pairs):
        for side in ("source", "target"):
            ref = getattr(pair, side)
            if ref.server == name:
                columns = fetch_columns(conn, ref.table)
                problems += column_problems(f"pairs[{i}].{side}.table", pair, ref.table, columns)
                if columns:
                    problems += key_problems(f"pairs[{i}].{side}.table", ref.table, pair.key,
                                             fetch_index_parts(conn, ref.table))
    return problems


def _state_problems(settings: Settings) -> list[str]:
    try:
        conn = mysql.connect(settings.state.dsn.with_database(None), timeout_s=5)
    except CdcRepairError as exc:
        return [f"state.dsn: {exc}"]
    conn.close()
    return []


def broker_problems(settings: Settings) -> list[str]:
    from cdc_repair.sink.kafka_admin import broker_reachable  # the Kafka client lives in sink/

    error = broker_reachable(settings.kafka.bootstrap_servers)
    return [f"kafka.bootstrap_servers: {error}"] if error else []
