"""Repairs racing a live publisher: the guard never lets an older version overwrite a newer one online."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair_dev.devservices.mariadb import MariaDBServer

KEYS = range(1, 41)


@pytest.fixture(params=[100, 7], ids=["one-batch", "small-batches-two-threads"])
def env(mariadb: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[Env]:
    e = make_env(mariadb, repair={"batch_size": request.param, "threads": 2})
    yield e
    e.drop()


def test_guard_under_a_concurrent_publisher_never_moves_a_row_back(env: Env) -> None:
    # author_id is the article's version: the publisher only ever raises it, source first, then online
    env.many(INSERT.format(t=env.src), [article(i, author_id=0) for i in KEYS])
    env.many(INSERT.format(t=env.tgt), [article(i, author_id=0) for i in KEYS])
    env.sql(f"CREATE TABLE {env.online}.went_back (id BIGINT, old_v BIGINT, new_v BIGINT)")
    env.sql(f"CREATE TRIGGER {env.online}.no_going_back BEFORE UPDATE ON {env.tgt} FOR EACH ROW "
            f"INSERT INTO {env.online}.went_back SELECT OLD.id, OLD.author_id, NEW.author_id "
            f"FROM DUAL WHERE NEW.author_id < OLD.author_id")
    stop = threading.Event()
    version = [0]
    errors: list[BaseException] = []

    def publisher() -> None:
        conn = env.server.root_connection()
        rng = random.Random(7)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    i = rng.choice(KEYS)
                    version[0] += 1
                    cur.execute(f"UPDATE {env.src} SET author_id = %s WHERE id = %s", (version[0], i))
                    if rng.random() < 0.7:  # 30 % of publishes fail between the two writes
                        cur.execute(f"UPDATE {env.tgt} SET author_id = %s WHERE id = %s", (version[0], i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    runs = 0
    repaired = 0
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            env.record(KEYS)
            report = run_repair(env.settings, mode="execute")
            repaired += report.count("repaired")
            runs += 1
    finally:
        stop.set()
        thread.join(10)
    assert not errors
    assert runs >= 3 and repaired > 0 and version[0] > 100
    env.record(KEYS)
    final = run_repair(env.settings, mode="execute")
    assert final.differences_left == 0
    assert [v for v in env.verdicts(KEYS) if v.is_mismatch] == []
    assert env.sql(f"SELECT * FROM {env.online}.went_back") == []  # no newer write was ever overwritten


@pytest.mark.slow
def test_worker_loop_against_a_publishing_workload_for_30_s(env: Env) -> None:
    """The daemon path (RepairWorker.run) while authors create, publish (upsert online), withdraw and edit."""
    from cdc_repair.repair.worker import RepairWorker

    env.sql(f"CREATE TABLE {env.online}.went_back (id BIGINT, old_v BIGINT, new_v BIGINT)")
    env.sql(f"CREATE TRIGGER {env.online}.no_going_back BEFORE UPDATE ON {env.tgt} FOR EACH ROW "
            f"INSERT INTO {env.online}.went_back SELECT OLD.id, OLD.author_id, NEW.author_id "
            f"FROM DUAL WHERE NEW.author_id < OLD.author_id")
    stop = threading.Event()
    errors: list[BaseException] = []
    version = [0]
    upsert = (f"INSERT INTO {env.tgt} (id, author_id, title, content, status, ctime, utime) "
              f"SELECT id, author_id, title, content, status, ctime, utime FROM {env.src} WHERE id = %s "
              f"ON DUPLICATE KEY UPDATE author_id = VALUES(author_id), title = VALUES(title), "
              f"content = VALUES(content), status = VALUES(status), utime = VALUES(utime)")

    def authors() -> None:
        conn = env.server.root_connection()
        rng = random.Random(11)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    i = rng.randint(1, 200)
                    version[0] += 1
                    v = version[0]
                    op = rng.random()
                    if op < 0.6:  # edit and publish (source first, then the online upsert, which may fail)
                        cur.execute(f"INSERT INTO {env.src} (id, author_id, title, content, status, ctime, utime) "
                                    f"VALUES (%s, %s, %s, %s, 2, 1, %s) ON DUPLICATE KEY UPDATE "
                                    f"author_id = VALUES(author_id), title = VALUES(title), "
                                    f"content = VALUES(content), status = 2, utime = VALUES(utime)",
                                    (i, v, f"t{v}", f"body {v}".encode() * 20, v))
                        if rng.random() < 0.8:
                            cur.execute(upsert, (i,))
                    elif op < 0.8:  # withdraw
                        cur.execute(f"UPDATE {env.src} SET status = 3, author_id = %s WHERE id = %s", (v, i))
                        if rng.random() < 0.8:
                            cur.execute(f"UPDATE {env.tgt} SET status = 3, author_id = %s WHERE id = %s", (v, i))
                    else:  # edit a draft-in-progress (no online write expected)
                        cur.execute(f"UPDATE {env.src} SET status = 1, title = %s WHERE id = %s", (f"d{v}", i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    fast = env.settings.model_copy(update={"scheduler": env.settings.scheduler.model_copy(
        update={"retry_interval_s": 0.2})})
    worker = RepairWorker(fast, worker_id="soak")
    writer = threading.Thread(target=authors, daemon=True)
    loop = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    writer.start()
    loop.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:  # the validator's part: check every key, record mismatches
            env.record(range(1, 201))
            time.sleep(0.3)
    finally:
        stop.set()
        writer.join(10)
        loop.join(30)
        worker.close()
    assert not errors and version[0] > 1000
    assert worker.totals.repaired > 50
    env.record(range(1, 201))
    assert run_repair(env.settings, mode="execute").differences_left == 0
    assert [v for v in env.verdicts(range(1, 201)) if v.is_mismatch] == []
    assert env.sql(f"SELECT * FROM {env.online}.went_back") == []
