"""Helpers for the validate integration tests (no tests here): fresh webook-like databases per test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.state.engine import state_engine
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ARTICLE_DDL = """CREATE TABLE {db}.{table} (
  id BIGINT NOT NULL PRIMARY KEY, author_id BIGINT, title VARCHAR(4096), content BLOB, status TINYINT,
  ctime BIGINT, utime BIGINT, KEY idx_utime (utime)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

MIRROR_DDL = """CREATE TABLE {db}.{table} (
  id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255), note VARCHAR(255) NULL, body LONGBLOB,
  price DOUBLE, utime BIGINT, KEY idx_utime (utime)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


@dataclass
class Env:
    """Two fresh databases (author, online) + a state DB on the session MariaDB, and Settings for them."""

    server: MariaDBServer
    prefix: str
    settings: Settings
    raw: dict[str, Any]

    def write_config(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.raw, sort_keys=False))
        return path

    @property
    def author(self) -> str:
        return f"{self.prefix}_a"

    @property
    def online(self) -> str:
        return f"{self.prefix}_o"

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.server.query(statement, params)

    def many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        self.server.execute_many(statement, rows)

    def drop(self) -> None:
        for db in (self.author, self.online, f"{self.prefix}_state"):
            self.sql(f"DROP DATABASE IF EXISTS {db}")


def make_env(server: MariaDBServer, *, extra: dict[str, Any] | None = None, bootstrap: str = "127.0.0.1:1",
             topic: str = "cdc-repair.rows") -> Env:
    prefix = f"v{uuid.uuid4().hex[:10]}"
    env_dbs = (f"{prefix}_a", f"{prefix}_o")
    conn = server.root_connection()
    with conn.cursor() as cur:
        for db in env_dbs:
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute(ARTICLE_DDL.format(db=env_dbs[0], table="articles"))
        cur.execute(ARTICLE_DDL.format(db=env_dbs[1], table="published_articles"))
        cur.execute(MIRROR_DDL.format(db=env_dbs[0], table="items"))
        cur.execute(MIRROR_DDL.format(db=env_dbs[1], table="items"))
    conn.close()
    dsn = server.dsn().to_url()
    raw: dict[str, Any] = {
        "servers": {"author": {"dsn": dsn}, "online": {"dsn": dsn}},
        "state": {"dsn": server.dsn(f"{prefix}_state").to_url()},
        "kafka": {"bootstrap_servers": [bootstrap], "topic": {"mode": "single", "name": topic},
                  "partitions": 3, "dead_letter_topic": f"{topic}.dlq",
                  "consumer": {"group_id": f"g-{prefix}"}},
        "pairs": [
            {"name": "articles", "kind": "publish",
             "source": {"server": "author", "table": f"{env_dbs[0]}.articles"},
             "target": {"server": "online", "table": f"{env_dbs[1]}.published_articles"},
             "key": ["id"], "columns": ["id", "author_id", "title", "content", "status", "ctime", "utime"],
             "compare": ["author_id", "title", "content", "status"], "ignore": ["ctime", "utime"]},
            {"name": "items", "kind": "mirror",
             "source": {"server": "author", "table": f"{env_dbs[0]}.items"},
             "target": {"server": "online", "table": f"{env_dbs[1]}.items"}},
        ],
        "validator": {"settle_delay_s": 0.3, "recheck_delay_s": 0.3, "rechecks": 2,
                      "full_scan": {"chunk_rows": 100}},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    settings = settings_from_mapping(raw)
    state_engine(settings.state.dsn).dispose()  # create the state schema once, before any concurrent user
    return Env(server, prefix, settings, raw)


ART_INSERT = "INSERT INTO {t} (id, author_id, title, content, status, ctime, utime) VALUES (%s,%s,%s,%s,%s,%s,%s)"


def article(i: int, status: int = 2, **kw: Any) -> tuple[Any, ...]:
    row = {"id": i, "author_id": i % 13, "title": f"title {i}", "content": f"content of {i} ".encode() * 3,
           "status": status, "ctime": 1000 + i, "utime": 2000 + i}
    row.update(kw)
    return tuple(row.values())


ITEM_INSERT = "INSERT INTO {t} (id, name, note, body, price, utime) VALUES (%s,%s,%s,%s,%s,%s)"
BIG = bytes(range(256)) * (4 * 4096)  # 4 MB


def plant_articles(env: Env, n: int = 3000) -> dict[int, str]:
    """n published articles on both sides, then one divergence of each kind; returns id → expected kind."""
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    base = {i: article(i) for i in range(1, n + 1)}
    env.many(ART_INSERT.format(t=src), list(base.values()))
    online = dict(base)
    expected: dict[int, str] = {}
    for i in (100, 1500):
        del online[i]
        expected[i] = "missing_in_target"
    online[n + 100] = article(n + 100)
    expected[n + 100] = "extra_in_target"
    online[0] = article(0)  # below the first source key
    expected[0] = "extra_in_target"
    online[300] = article(300, title="changed")
    online[301] = article(301, content=b"changed")
    online[302] = article(302, author_id=999)
    expected.update({300: "different", 301: "different", 302: "different"})
    online[500] = article(500, title="")
    env.sql(f"UPDATE {src} SET title=NULL WHERE id=500")
    online[600] = article(600, title="abc")
    env.sql(f"UPDATE {src} SET title='abc ' WHERE id=600")
    online[700] = article(700, title="emoji 😁")
    env.sql(f"UPDATE {src} SET title='emoji 😀' WHERE id=700")
    online[701] = article(701, title="emoji 😀")
    env.sql(f"UPDATE {src} SET title='emoji 😀' WHERE id=701")
    expected.update({500: "different", 600: "different", 700: "different"})
    # status rules: private must be private online; private with old content is fine; drafts are free
    env.sql(f"UPDATE {src} SET status=3 WHERE id IN (400, 401, 403)")
    online[400] = article(400, status=2)
    expected[400] = "different"
    online[401] = article(401, status=3, title="old title")
    del online[403]
    env.sql(f"UPDATE {src} SET status=1, title='draft' WHERE id=402")
    # utime/ctime differences are ignored
    online[800] = article(800, ctime=1, utime=1)
    env.many(ART_INSERT.format(t=tgt), list(online.values()))
    return expected


def plant_items(env: Env) -> dict[int, str]:
    src, tgt = f"{env.author}.items", f"{env.online}.items"
    rows = [(i, f"n{i}", None, b"b", 1.25, 1) for i in range(1, 200)]
    env.many(ITEM_INSERT.format(t=src), [*rows, (210, "big", None, BIG, 0.0, 1), (211, "big", None, BIG, 0.0, 1),
                                         (212, "only src", "", b"", 0.0, 1), (214, "x", None, b"", 0.0, 1)])
    env.many(ITEM_INSERT.format(t=tgt), [*rows, (210, "big", None, BIG[:-1] + b"!", 0.0, 1),
                                         (211, "big", None, BIG, 0.0, 1), (213, "only tgt", "", b"", 0.0, 1),
                                         (214, "x", "", b"", 0.0, 1)])
    env.sql(f"UPDATE {tgt} SET price=1.5 WHERE id=50")
    return {210: "different", 212: "missing_in_target", 213: "extra_in_target", 214: "different",
            50: "different"}


# ---------------------------------------------------------------- Kafka side (FlatMessages with the capture codec)

ART_COLS = ("id", "author_id", "title", "content", "status", "ctime", "utime")


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")  # Canal writes binary as ISO-8859-1 text
    return str(value)


def flat(database: str, table: str, rows: list[dict[str, Any]], *, type: str = "INSERT",
         es_ms: int | None = None, old: list[dict[str, Any]] | None = None) -> bytes:
    import time as _time

    from cdc_repair.sink.flat_message import FlatMessage, encode_flat_message
    es = es_ms if es_ms is not None else int(_time.time() * 1000)
    data = [{k: as_text(v) for k, v in r.items()} for r in rows]
    olds = [{k: as_text(v) for k, v in r.items()} for r in old] if old else None
    return encode_flat_message(FlatMessage(database=database, table=table, type=type, data=data, old=olds,
                                           pk_names=["id"], es=es, ts=es))


class Publisher:
    """Produces FlatMessages like the capture stage would (partition by key, acks=all)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 3) -> None:
        from kafka import KafkaProducer

        from cdc_repair.sink.partitioning import partition_for

        self._partition_for = partition_for
        self.topic = topic
        self.partitions = partitions
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                      max_request_size=16 * 1024 * 1024)

    def send_rows(self, database: str, table: str, rows: list[dict[str, Any]], **kw: Any) -> None:
        """One message per partition group of rows (multi-row messages, as capture batches them)."""
        groups: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(self._partition_for([str(r["id"])], self.partitions), []).append(r)
        for part, group in groups.items():
            for i in range(0, len(group), 20):
                chunk = group[i:i + 20]
                self.producer.send(self.topic, flat(database, table, chunk, **kw), key=str(chunk[0]["id"]).encode(),
                                   partition=part)

    def send_raw(self, value: bytes, partition: int = 0) -> None:
        self.producer.send(self.topic, value, partition=partition)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


def table_rows(env: Env, table: str) -> list[dict[str, Any]]:
    conn = env.server.root_connection()
    try:
        import pymysql.cursors

        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SELECT * FROM {table}")
            return list(cur.fetchall())
    finally:
        conn.close()


class PublishWriter:
    """Publish-like writes: the source row first, the target row 0–200 ms later (as a publish service does).

    One id is never in flight twice, so when the writer is done both tables agree: any confirmed
    inconsistency recorded meanwhile is a false positive. With a `Publisher`, every write is also sent as a
    FlatMessage (what capture would produce), with `es` = the write's commit time.
    """

    def __init__(self, env: Env, ids: range, publishes: int, rate_per_s: float, pub: Publisher | None = None,
                 seed: int = 7) -> None:
        import random
        import threading

        self.env = env
        self.ids = list(ids)
        self.publishes = publishes
        self.rate = rate_per_s
        self.pub = pub
        self.rng = random.Random(seed)
        self.done = 0
        self.sent_messages = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> PublishWriter:
        self.thread.start()
        return self

    def join(self, timeout: float = 300) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "writer did not finish"
        assert self.error is None, self.error

    def _run(self) -> None:
        import heapq
        import time

        try:
            src_conn = self.env.server.root_connection()
            tgt_conn = self.env.server.root_connection()
            src, tgt = f"{self.env.author}.articles", f"{self.env.online}.published_articles"
            busy: set[int] = set()
            queue: list[tuple[float, int, tuple[Any, ...]]] = []
            t0 = time.monotonic()
            issued = 0
            while issued < self.publishes or queue:
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, i, row = heapq.heappop(queue)
                    with tgt_conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {tgt} VALUES (%s,%s,%s,%s,%s,%s,%s) ON DUPLICATE KEY UPDATE "
                                    "author_id=VALUES(author_id), title=VALUES(title), content=VALUES(content), "
                                    "status=VALUES(status), ctime=VALUES(ctime), utime=VALUES(utime)", row)
                    self._send(self.env.online, "published_articles", row)
                    busy.discard(i)
                    self.done += 1
                if issued < self.publishes and now - t0 >= issued / self.rate:
                    free = [i for i in self.rng.sample(self.ids, min(8, len(self.ids))) if i not in busy]
                    if free:
                        i = free[0]
                        status = 2 if self.rng.random() < 0.8 else 3
                        ms = int(time.time() * 1000)
                        row = (i, i % 13, f"title {i} v{issued}", f"content {issued} ".encode() * 20, status,
                               1000 + i, ms)
                        with src_conn.cursor() as cur:
                            cur.execute(f"UPDATE {src} SET title=%s, content=%s, status=%s, utime=%s WHERE id=%s",
                                        (row[2], row[3], status, ms, i))
                        self._send(self.env.author, "articles", row)
                        busy.add(i)
                        heapq.heappush(queue, (time.monotonic() + self.rng.uniform(0, 0.2), i, row))
                        issued += 1
                time.sleep(0.0005)
            src_conn.close()
            tgt_conn.close()
        except BaseException as exc:
            self.error = exc

    def _send(self, db: str, table: str, row: tuple[Any, ...]) -> None:
        if self.pub is None:
            return
        self.pub.send_rows(db, table, [dict(zip(ART_COLS, row, strict=True))], type="UPDATE",
                           old=[{"utime": "0"}])
        self.sent_messages += 1
