"""The only importer of PyMySQL: connections, transactions, running `Statement`s, classifying errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from cdc_repair.db.dsn import Dsn, TlsMode
from cdc_repair.db.sql import Statement
from cdc_repair.db.tls import driver_tls_args, preferred_context, verify_tls_session
from cdc_repair.errors import TerminalError, TransientError, UnreachableError

Connection = pymysql.connections.Connection
DriverError = pymysql.err.MySQLError
Row = tuple[Any, ...]
Error = pymysql.err.MySQLError  # the driver's base error, for adapters that tolerate a failed query

# MySQL error numbers worth retrying: lock wait timeout, deadlock, server gone/lost, too many connections,
# read-only during failover, and client-side "can't connect".
_CR_SSL_CONNECTION_ERROR = 2026
_TRANSIENT_ERRNOS = frozenset({1205, 1213, 2006, 2013, 1040, 1290, 2003, 2002, 1927, 1053})


def connect(dsn: Dsn, *, autocommit: bool = True, timeout_s: float = 10.0, database: str | None = None,
            multi_statements: bool = False) -> Connection:
    """Open a connection (TLS as the DSN asks); an unreachable server raises `UnreachableError` naming the DSN.
    `multi_statements`: let `execute_each` send several statements per round trip (the repair writers)."""
    preferred = dsn.tls.mode is TlsMode.PREFERRED
    tls_args = {"ssl_disabled": True} if preferred else driver_tls_args(dsn)
    try:
        conn = pymysql.connect(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            database=database if database is not None else dsn.database,
            autocommit=autocommit,
            connect_timeout=max(1, int(timeout_s)),
            read_timeout=None,
            charset="utf8mb4",
            binary_prefix=True,
            client_flag=CLIENT.MULTI_STATEMENTS if multi_statements else 0,
            defer_connect=preferred,
            **tls_args,
        )
        if preferred:
            _offer_tls(conn)
            conn.connect()
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        if code in (1045, 1044, 1049):
            reason = exc.args[1] if len(exc.args) > 1 else exc
            hint = "" if dsn.tls.enabled else " (the DSN disables TLS; if the account REQUIREs SSL, drop ssl_mode)"
            raise TerminalError(f"cannot log in to {dsn.masked()}: {reason}{hint}") from None
        if code == _CR_SSL_CONNECTION_ERROR:
            verify_tls_session(dsn, None)  # raises the one-line "requires TLS" error
            raise TerminalError(f"TLS to {dsn.masked()} failed: {exc.args[-1]}") from None
        raise UnreachableError(f"cannot connect to {dsn.masked()}: {exc.args[-1]} (is the server running?)") from None
    if dsn.tls.required:
        try:
            verify_tls_session(dsn, session_cipher(conn))
        except TerminalError:
            conn.close()
            raise
    return conn


def _offer_tls(conn: Connection) -> None:
    """PREFERRED TLS exactly as PyMySQL's own default (encrypt when the server offers it, certificate not
    verified), but with one context per process: PyMySQL builds a new one, loading the system CA store it then
    does not use, on every connection (~40 ms each, measured). Sets the attributes its __init__ would have set
    (PyMySQL is pinned, see pyproject.toml)."""
    conn.ssl = True
    setattr(conn, "ctx", preferred_context())  # noqa: B010 - attributes the type stubs do not declare
    setattr(conn, "_ssl_required", False)  # noqa: B010


def session_cipher(conn: Connection) -> str | None:
    """The TLS cipher of this session, or None when it is plaintext (the server's own view of it)."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:  # a plain cursor whatever the connection's cursorclass
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    value = row[1] if row else None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value else None


def classify(exc: BaseException, what: str) -> Exception:
    """Map a driver error to TransientError or TerminalError with a one-line message naming `what`."""
    if isinstance(exc, pymysql.err.MySQLError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        transient = code in _TRANSIENT_ERRNOS or isinstance(exc, pymysql.err.InterfaceError)
        return (TransientError if transient else TerminalError)(f"{what}: MySQL error {code}: {text}")
    return TerminalError(f"{what}: {exc}")


def fetch_all(conn: Connection, stmt: Statement) -> list[Row]:
    with conn.cursor() as cur:
        cur.execute(stmt.sql, stmt.params or None)
        return list(cur.fetchall())


def fetch_one(conn: Connection, stmt: Statement) -> Row | None:
    with conn.cursor() as cur:
        cur.execute(stmt.sql, stmt.params or None)
        row = cur.fetchone()
        return tuple(row) if row is not None else None


def fetch_dicts(conn: Connection, stmt: Statement) -> list[dict[str, Any]]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(stmt.sql, stmt.params or None)
        return list(cur.fetchall())


def execute(conn: Connection, stmt: Statement) -> int:
    """Run one statement; return the affected row count."""
    with conn.cursor() as cur:
        return int(cur.execute(stmt.sql, stmt.params or None))


MULTI_MAX_BYTES = 4 * 1024 * 1024  # statements sent together stay far below max_allowed_packet


def execute_each(conn: Connection, stmts: Sequence[Statement]) -> list[int]:
    """Run `stmts` in order and return each one's affected row count: several per round trip when the
    connection was opened with `multi_statements` (up to MULTI_MAX_BYTES of SQL), else one by one.
    An error stops at the failing statement (the server runs none after it) and raises."""
    if not conn.client_flag & CLIENT.MULTI_STATEMENTS:
        return [execute(conn, stmt) for stmt in stmts]
    counts: list[int] = []
    with conn.cursor() as cur:
        pending: list[str] = []
        size = 0
        for stmt in stmts:
            text = cur.mogrify(stmt.sql, stmt.params or None)
            if pending and size + len(text) > MULTI_MAX_BYTES:
                counts += _run_multi(cur, pending)
                pending, size = [], 0
            pending.append(text)
            size += len(text)
        if pending:
            counts += _run_multi(cur, pending)
    return counts


def _run_multi(cur: Any, texts: list[str]) -> list[int]:
    cur.execute(";\n".join(texts))
    counts = [int(cur.rowcount)]
    while cur.nextset():
        counts.append(int(cur.rowcount))
    return counts


def execute_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    with conn.cursor() as cur:
        return int(cur.executemany(sql, rows) or 0)


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """BEGIN … COMMIT, ROLLBACK on any error. The repository/ledger layer is the only caller."""
    conn.begin()
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    conn.commit()


def fetch_variables(conn: Connection, names: Sequence[str]) -> dict[str, str]:
    """Global server variables by name (lower-case keys); absent ones are missing from the result."""
    marks = ", ".join(["%s"] * len(names))
    rows = fetch_all(conn, Statement(f"SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES "
                                     f"WHERE VARIABLE_NAME IN ({marks})", tuple(n.upper() for n in names)))
    return {str(k).lower(): str(v) for k, v in rows}
