"""The only importer of SQLAlchemy's engine: build the state engine and create the state schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

from cdc_repair.db.dsn import Dsn
from cdc_repair.db.mysql import classify, session_cipher
from cdc_repair.db.sql import quote_ident
from cdc_repair.db.tls import driver_tls_args, verify_tls_session
from cdc_repair.errors import ConfigError
from cdc_repair.state.tables import metadata

StateEngine: TypeAlias = Engine
"""The state engine as other stages name it, so only state/ imports SQLAlchemy."""


def state_engine(dsn: Dsn, *, create_schema: bool = True) -> Engine:
    """An engine on the state database; creates the database and tables when asked (idempotent)."""
    if not dsn.database:
        raise ConfigError(["state.dsn: the state DSN must name a database (e.g. mysql://user:pw@host:3306/cdc_repair)"])
    try:
        return _open(dsn, dsn.database, create_schema)
    except DBAPIError as exc:  # one line naming the state database, never SQLAlchemy's multi-line dump
        reason = classify(exc.orig or exc, f"state database {dsn.masked()}")
        raise type(reason)(f"{reason} (is it running? check state.dsn)") from None


@contextmanager
def state_errors(what: str) -> Iterator[None]:
    """A driver error inside becomes `db/mysql.py: classify`'s one line naming `what` (transient or terminal),
    never SQLAlchemy's multi-line dump; callers outside state/ then need not know SQLAlchemy's exceptions."""
    try:
        yield
    except DBAPIError as exc:
        raise classify(exc.orig or exc, what) from exc


def _open(dsn: Dsn, database: str, create_schema: bool) -> Engine:
    if create_schema:
        server = _engine(dsn.with_database(None), pool_pre_ping=True)
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)} CHARACTER SET utf8mb4"))
        server.dispose()
    engine = _engine(dsn, pool_pre_ping=True, pool_recycle=3600, pool_size=5, max_overflow=10)
    if create_schema:
        metadata.create_all(engine)
        _add_new_columns(engine)
    return engine


def _add_new_columns(engine: Engine) -> None:
    """Add nullable columns introduced after a state database was created (`create_all` creates only missing
    tables). Only nullable columns are ever added this way, so existing rows stay valid."""
    with engine.begin() as conn:  # one query, not a reflection per table (which cost ~150 ms per engine)
        rows = conn.execute(text("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                                 "WHERE TABLE_SCHEMA = DATABASE()")).all()
        have: dict[str, set[str]] = {}
        for table_name, column_name in rows:
            have.setdefault(str(table_name), set()).add(str(column_name))
        for table in metadata.sorted_tables:
            for column in table.columns:
                if column.name not in have.get(table.name, {column.name}) and column.nullable:
                    ddl = CreateColumn(column).compile(dialect=engine.dialect)
                    conn.execute(text(f"ALTER TABLE {quote_ident(table.name)} ADD COLUMN {ddl}"))


def _engine(dsn: Dsn, **options: Any) -> Engine:
    """An engine whose every pooled connection uses the DSN's TLS, checked once per new connection."""
    engine = create_engine(_url(dsn), connect_args=driver_tls_args(dsn), **options)
    if dsn.tls.required:
        @event.listens_for(engine, "connect")
        def _check_tls(dbapi_conn: Any, _record: Any) -> None:
            verify_tls_session(dsn, session_cipher(dbapi_conn))
    return engine


def _url(dsn: Dsn) -> str:
    plain = Dsn(dsn.host, dsn.port, dsn.user, dsn.password, dsn.database)  # driver options are ours to set
    return plain.to_url().replace("mysql://", "mysql+pymysql://", 1) + "?charset=utf8mb4"
