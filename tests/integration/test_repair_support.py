"""Helpers for the repair integration tests (no tests here): fresh author/online/state databases per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import PairConfig, Settings, settings_from_mapping
from cdc_repair.db import mysql
from cdc_repair.model.verdict import Verdict
from cdc_repair.state import ledger
from cdc_repair.state.engine import state_engine
from cdc_repair.validate.check import check
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ARTICLE_DDL = """CREATE TABLE {db}.{table} (
  id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(4096), content BLOB, status TINYINT,
  ctime BIGINT, utime BIGINT, KEY idx_utime (utime)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

COLS = ("id", "author_id", "title", "content", "status", "ctime", "utime")
INSERT = "INSERT INTO {t} (id, author_id, title, content, status, ctime, utime) VALUES (%s,%s,%s,%s,%s,%s,%s)"


def article(i: int, status: int = 2, **kw: Any) -> tuple[Any, ...]:
    row: dict[str, Any] = {"id": i, "author_id": i % 13, "title": f"title {i}",
                           "content": f"content of {i} ".encode() * 3, "status": status, "ctime": 1000 + i,
                           "utime": 2000 + i}
    row.update(kw)
    return tuple(row[c] for c in COLS)


@dataclass
class Env:
    server: MariaDBServer
    prefix: str
    settings: Settings
    raw: dict[str, Any]

    @property
    def author(self) -> str:
        return f"{self.prefix}_a"

    @property
    def online(self) -> str:
        return f"{self.prefix}_o"

    @property
    def src(self) -> str:
        return f"{self.author}.articles"

    @property
    def tgt(self) -> str:
        return f"{self.online}.published_articles"

    @property
    def pair(self) -> PairConfig:
        return self.settings.pair("articles")

    def write_config(self, path: Path, **overrides: Any) -> Path:
        raw = {**self.raw}
        for key, value in overrides.items():
            raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.server.query(statement, params)

    def many(self, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
        self.server.execute_many(statement, rows)

    def row(self, table: str, i: int) -> dict[str, Any] | None:
        got = self.sql(f"SELECT {', '.join(COLS)} FROM {table} WHERE id = %s", (i,))
        return dict(zip(COLS, got[0], strict=True)) if got else None

    def verdicts(self, ids: Iterable[int]) -> list[Verdict]:
        conn = mysql.connect(self.server.dsn())
        try:
            return check(self.pair, [(i,) for i in ids], conn, conn)
        finally:
            conn.close()

    def record(self, ids: Iterable[int], *, source_events: dict[str, Any] | None = None) -> list[Verdict]:
        """Check the keys and put the mismatches into the ledger (the validator's real path)."""
        verdicts = self.verdicts(ids)
        engine = state_engine(self.settings.state.dsn)
        try:
            ledger.record_verdicts(engine, verdicts, "cli", source_events=source_events)
        finally:
            engine.dispose()
        return verdicts

    def ledger(self) -> dict[str, dict[str, Any]]:
        rows = self.sql(f"SELECT pk, kind, status, attempts, repair_id, last_error, next_retry_at "
                        f"FROM {self.prefix}_state.inconsistency")
        keys = ("pk", "kind", "status", "attempts", "repair_id", "last_error", "next_retry_at")
        return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}

    def drop(self) -> None:
        for db in (self.author, self.online, f"{self.prefix}_state"):
            self.sql(f"DROP DATABASE IF EXISTS {db}")


def make_env(server: MariaDBServer, **extra: Any) -> Env:
    prefix = f"r{uuid.uuid4().hex[:10]}"
    conn = server.root_connection()
    with conn.cursor() as cur:
        for db in (f"{prefix}_a", f"{prefix}_o"):
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute(ARTICLE_DDL.format(db=f"{prefix}_a", table="articles"))
        cur.execute(ARTICLE_DDL.format(db=f"{prefix}_o", table="published_articles"))
    conn.close()
    dsn = server.dsn().to_url()
    raw: dict[str, Any] = {
        "servers": {"author": {"dsn": dsn}, "online": {"dsn": dsn}},
        "state": {"dsn": server.dsn(f"{prefix}_state").to_url()},
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
        "pairs": [
            {"name": "articles", "kind": "publish",
             "source": {"server": "author", "table": f"{prefix}_a.articles"},
             "target": {"server": "online", "table": f"{prefix}_o.published_articles"},
             "key": ["id"], "columns": list(COLS),
             "compare": ["author_id", "title", "content", "status"], "ignore": ["ctime", "utime"]},
        ],
        "repair": {"backoff": {"initial_s": 0.1, "max_s": 1.0, "multiplier": 2.0, "jitter": 0.0}},
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return Env(server, prefix, settings_from_mapping(raw), raw)
