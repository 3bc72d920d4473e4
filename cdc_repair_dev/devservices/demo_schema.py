"""Create the webook demo schema from `resources/webook.sql`."""

from __future__ import annotations

from importlib.resources import files

from cdc_repair.config import Settings
from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement


def webook_sql() -> str:
    return files("cdc_repair").joinpath("resources/webook.sql").read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Split a plain DDL file on `;` (no procedures or string literals with `;` in it)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def apply_sql(dsn: Dsn, sql: str) -> None:
    conn = mysql.connect(dsn.with_database(None))
    try:
        for stmt in split_statements(sql):
            mysql.execute(conn, Statement(stmt))
    finally:
        conn.close()


def create_demo_schema(settings: Settings) -> list[str]:
    """Run webook.sql on every distinct server of the first pair; returns the masked DSNs done."""
    pair = settings.pairs[0]
    done: list[str] = []
    for server in dict.fromkeys([pair.source.server, pair.target.server]):
        dsn = settings.server_dsn(server)
        if dsn.masked() not in done:  # two names for one server: create once
            apply_sql(dsn, webook_sql())
            done.append(dsn.masked())
    return done
