"""A webook-like workload for the demo and the soak test: authors write, publish and withdraw articles.

Publishing writes two tables (authoring `articles`, then the online `published_articles`), in two separate
transactions, as the real service does; `publish_fail_share` of publishes "crash" between the two writes, so the
online side misses the new version (the inconsistency cdc-repair exists for). Withdrawing can fail the same
way. Besides, `corrupt_share` of operations damage the online side directly: a changed title, a deleted row,
or an orphan row whose key is absent from the source.

`plan_op` is pure (a seeded `random.Random` decides everything); `Workload` applies the plan to MySQL.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import PairConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement, quote_table

log = logging.getLogger(__name__)

DRAFT, PUBLISHED, PRIVATE = 1, 2, 3
ORPHAN_ID_BASE = 9_000_000_000  # orphans get ids no author will ever use


@dataclass(frozen=True)
class WorkloadConfig:
    rate_per_s: float = 20.0
    authors: int = 8
    publish_fail_share: float = 0.1  # publishes that write the author table only
    withdraw_fail_share: float = 0.05
    corrupt_share: float = 0.03  # operations that damage the online table directly
    seed: int = 42
    first_id: int = 1


@dataclass(frozen=True)
class Op:
    kind: str  # create | edit | publish | withdraw | corrupt | delete_online | orphan
    article_id: int
    author_id: int = 0
    fail_between: bool = False
    text: str = ""


@dataclass
class WorkloadStats:
    counts: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    started_at: float = field(default_factory=time.time)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "errors": self.errors}


@dataclass
class Model:
    """What the workload believes exists (enough to choose sensible operations)."""

    next_id: int
    status: dict[int, int] = field(default_factory=dict)  # article id → status in the author table
    online: set[int] = field(default_factory=set)  # ids believed present online
    next_orphan: int = ORPHAN_ID_BASE


def plan_op(rng: random.Random, model: Model, cfg: WorkloadConfig) -> Op:
    """The next operation (pure apart from advancing `rng`)."""
    author = rng.randint(1, cfg.authors)
    ids = list(model.status)
    if not ids or rng.random() < 0.2:
        return Op("create", model.next_id, author, text=_text(rng))
    if rng.random() < cfg.corrupt_share:
        online = sorted(model.online)
        roll = rng.random()
        if roll < 0.2:
            return Op("orphan", model.next_orphan, author, text=_text(rng))
        if online:
            return Op("corrupt" if roll < 0.7 else "delete_online", rng.choice(online), author, text=_text(rng))
    article = rng.choice(ids)
    roll = rng.random()
    if roll < 0.35:
        return Op("edit", article, text=_text(rng))
    if roll < 0.8:
        return Op("publish", article, fail_between=rng.random() < cfg.publish_fail_share, text=_text(rng))
    return Op("withdraw", article, fail_between=rng.random() < cfg.withdraw_fail_share)


def _text(rng: random.Random) -> str:
    words = ("cdc", "binlog", "kafka", "repair", "consistency", "publish", "article", "reader", "author", "undo")
    return " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))


class Workload:
    """Applies planned operations at `rate_per_s` until stopped. Thread-safe stats in `stats`."""

    def __init__(self, settings: Settings, cfg: WorkloadConfig, pair: PairConfig | None = None) -> None:
        self.settings = settings
        self.cfg = cfg
        self.pair = pair or settings.pairs[0]
        self.src = quote_table(self.pair.source.table)
        self.tgt = quote_table(self.pair.target.table)
        self.rng = random.Random(cfg.seed)
        self.model = Model(next_id=cfg.first_id)
        self.stats = WorkloadStats()
        self._conns: dict[str, Any] = {}
        self._last_ts = 0
        # (table, "W"|"D", id, utime) of every write that changed a row: what must appear in Kafka.
        self.journal: list[tuple[str, str, int, int]] = []

    def _conn(self, server: str) -> Any:
        conn = self._conns.get(server)
        if conn is None:
            conn = mysql.connect(self.settings.server_dsn(server))
            self._conns[server] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:
                log.debug("closing a workload connection failed", exc_info=True)
        self._conns.clear()

    def run(self, stop_event: threading.Event, duration_s: float | None = None) -> WorkloadStats:
        """Apply operations until `stop_event` (or `duration_s`); a failed operation is counted and skipped."""
        interval = 1.0 / self.cfg.rate_per_s
        deadline = time.monotonic() + duration_s if duration_s else None
        next_at = time.monotonic()
        try:
            while not stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
                self.step()
                next_at += interval
                stop_event.wait(max(0.0, next_at - time.monotonic()))
        finally:
            self.close()
        return self.stats

    def step(self) -> None:
        op = plan_op(self.rng, self.model, self.cfg)
        try:
            self.apply(op)
        except Exception as exc:  # e.g. a server restart during the soak test: count, reconnect, go on
            self.stats.errors += 1
            log.debug("workload op %s failed: %s", op.kind, exc)
            self.close()
            time.sleep(0.2)

    def _ts(self) -> int:
        """Epoch ms, strictly increasing: every write gets its own utime, so it is identifiable in Kafka."""
        self._last_ts = max(int(time.time() * 1000), self._last_ts + 1)
        return self._last_ts

    def _write(self, conn: Any, side: str, stmt: Statement, article_id: int, utime: int) -> int:
        n = mysql.execute(conn, stmt)
        if n > 0:
            table = self.pair.source.table if side == "source" else self.pair.target.table
            self.journal.append((table, "D" if stmt.sql.startswith("DELETE") else "W", article_id, utime))
        return n

    def apply(self, op: Op) -> None:
        now = self._ts()
        src, tgt = self._conn(self.pair.source.server), self._conn(self.pair.target.server)
        m = self.model
        w = self._write
        if op.kind == "create":
            w(src, "source", Statement(f"INSERT INTO {self.src} (id, author_id, title, content, status, ctime, "
                                         "utime) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                         (op.article_id, op.author_id, f"title {op.text}", op.text.encode(), DRAFT,
                                          now, now)), op.article_id, now)
            m.status[op.article_id] = DRAFT
            m.next_id += 1
        elif op.kind == "edit":
            w(src, "source", Statement(f"UPDATE {self.src} SET title = %s, content = %s, status = %s, utime = %s "
                                       "WHERE id = %s",
                                       (f"title {op.text}", op.text.encode(), DRAFT, now, op.article_id)),
              op.article_id, now)
            m.status[op.article_id] = DRAFT
        elif op.kind == "publish":
            self._publish(src, tgt, op, now)
        elif op.kind == "withdraw":
            w(src, "source", Statement(f"UPDATE {self.src} SET status = %s, utime = %s WHERE id = %s",
                                       (PRIVATE, now, op.article_id)), op.article_id, now)
            m.status[op.article_id] = PRIVATE
            if op.fail_between:
                self.stats.add("withdraw_failed_between")
            else:
                w(tgt, "target", Statement(f"UPDATE {self.tgt} SET status = %s, utime = %s WHERE id = %s",
                                           (PRIVATE, now, op.article_id)), op.article_id, now)
        elif op.kind == "corrupt":
            w(tgt, "target", Statement(f"UPDATE {self.tgt} SET title = %s, utime = %s WHERE id = %s",
                                       (f"corrupted {op.text}", now, op.article_id)), op.article_id, now)
        elif op.kind == "delete_online":
            w(tgt, "target", Statement(f"DELETE FROM {self.tgt} WHERE id = %s", (op.article_id,)), op.article_id, 0)
            m.online.discard(op.article_id)
        elif op.kind == "orphan":
            w(tgt, "target", Statement(f"INSERT INTO {self.tgt} (id, author_id, title, content, status, ctime, "
                                       "utime) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                       (op.article_id, op.author_id, f"orphan {op.text}", b"", PUBLISHED, now,
                                        now)), op.article_id, now)
            m.next_orphan += 1
        self.stats.add(op.kind)

    def _publish(self, src: Any, tgt: Any, op: Op, now: int) -> None:
        """Write 1: the author table says published. Write 2 (may "crash" before): the online copy."""
        self._write(src, "source", Statement(f"UPDATE {self.src} SET status = %s, utime = %s WHERE id = %s",
                                             (PUBLISHED, now, op.article_id)), op.article_id, now)
        self.model.status[op.article_id] = PUBLISHED
        if op.fail_between:
            self.stats.add("publish_failed_between")
            return
        rows = mysql.fetch_all(src, Statement(f"SELECT id, author_id, title, content, status, ctime, utime "
                                              f"FROM {self.src} WHERE id = %s", (op.article_id,)))
        if not rows:
            return
        self._write(tgt, "target", Statement(
            f"INSERT INTO {self.tgt} (id, author_id, title, content, status, ctime, utime) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE author_id = VALUES(author_id), "
            "title = VALUES(title), content = VALUES(content), status = VALUES(status), utime = VALUES(utime)",
            tuple(rows[0])), op.article_id, int(rows[0][6]))
        self.model.online.add(op.article_id)


def reset_tables(settings: Settings, pair: PairConfig | None = None) -> None:
    """Empty both tables of the pair (the demo starts from a clean slate)."""
    pair = pair or settings.pairs[0]
    for side in (pair.source, pair.target):
        conn = mysql.connect(settings.server_dsn(side.server))
        try:
            mysql.execute(conn, Statement(f"DELETE FROM {quote_table(side.table)}"))
        finally:
            conn.close()


def contract_violations(settings: Settings, pair: PairConfig | None = None) -> dict[str, list[int]]:
    """An independent check of the webook publish contract, straight from both tables (the demo's and soak
    test's oracle, deliberately not using the validator): ids by kind of violation."""
    pair = pair or settings.pairs[0]
    cols = "id, author_id, title, content, status"

    def rows(side: Any) -> dict[int, tuple[Any, ...]]:
        conn = mysql.connect(settings.server_dsn(side.server))
        try:
            found = mysql.fetch_all(conn, Statement(f"SELECT {cols} FROM {quote_table(side.table)}"))
        finally:
            conn.close()
        return {int(r[0]): tuple(r[1:]) for r in found}

    src, tgt = rows(pair.source), rows(pair.target)
    out: dict[str, list[int]] = {"missing_in_target": [], "different": [], "extra_in_target": []}
    for key, row in src.items():
        status, online = row[3], tgt.get(key)
        if status == PUBLISHED and online is None:
            out["missing_in_target"].append(key)
            continue
        stale = online != row if status == PUBLISHED else (status == PRIVATE and online is not None
                                                           and online[3] != PRIVATE)
        if stale:
            out["different"].append(key)
    out["extra_in_target"] = sorted(k for k in tgt if k not in src)
    return out


def missing_from_stream(journal: list[tuple[str, str, int, int]], messages: Any) -> list[tuple[str, str, int, int]]:
    """Journal entries (row writes) with no matching row in the FlatMessages read from Kafka (pure).

    A write is matched by (schema.table, W, id, utime) for INSERT/UPDATE rows and (schema.table, D, id) for
    DELETE rows; duplicates in the stream are harmless (at-least-once).
    """
    seen: set[tuple[str, str, int, int]] = set()
    for msg in messages:
        if msg.is_ddl or not msg.data:
            continue
        table = f"{msg.database}.{msg.table}"
        for row in msg.data:
            if row.get("id") is None:
                continue
            if msg.type == "DELETE":
                seen.add((table, "D", int(row["id"]), 0))
            elif row.get("utime") is not None:
                seen.add((table, "W", int(row["id"]), int(row["utime"])))
    return [entry for entry in journal if entry not in seen]
