"""Concurrent repair batches never deadlock each other: contiguous absent keys take no gap locks (real MariaDB)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.metrics import REPAIRS
from cdc_repair_dev.devservices.mariadb import MariaDBServer

N = 10_000


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)  # the real concurrency settings: repair.threads 2, batch_size 100
    yield e
    e.drop()


def test_ten_thousand_contiguous_missing_keys_repair_without_a_single_deadlock(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    assert env.settings.repair.threads >= 2 and env.settings.repair.batch_size == 100
    for start in range(1, N + 1, 2000):
        env.many(INSERT.format(t=env.src), [article(i) for i in range(start, min(N + 1, start + 2000))])
    env.many(INSERT.format(t=env.tgt), [article(N + 50)])  # one row after the gap: the gap is shared by every batch
    env.sql(f"INSERT INTO {env.src} SELECT * FROM {env.tgt}")
    env.record(range(1, N + 1))
    failed_before = REPAIRS.labels("articles", "forward", "failed")._value.get()
    caplog.set_level(logging.WARNING, logger="cdc_repair")

    report = run_repair(env.settings, mode="execute")

    batch_failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert batch_failures == []  # no batch fell back to row by row (a deadlock is the usual cause)
    assert REPAIRS.labels("articles", "forward", "failed")._value.get() == failed_before
    assert report.exit_code == 0 and report.count("repaired") == N, report.summary()
    assert env.sql(f"SELECT COUNT(*) FROM {env.tgt}")[0][0] == N + 1
    assert env.sql(f"SELECT status, COUNT(*) FROM {env.prefix}_state.inconsistency GROUP BY status") == [
        ("repaired", N)]
    assert env.sql(f"SELECT COUNT(*) FROM {env.prefix}_state.repair_log WHERE status = 'applied'")[0][0] == N


def test_a_row_inserted_between_the_guard_read_and_the_insert_is_never_overwritten(env: Env) -> None:
    """READ COMMITTED leaves absent keys unlocked: a publisher may insert one after the guard's read. The batch's
    INSERT then hits the duplicate key, and the row-by-row retry's guard refuses to touch the publisher's row."""
    from cdc_repair.repair.executor import GuardFailed, RowServer, apply_batch
    from cdc_repair.repair.planner import plan_forward

    env.many(INSERT.format(t=env.src), [article(1), article(2)])
    env.record([1, 2])
    server = RowServer("online", env.settings.server_dsn("online"))
    src = RowServer("author", env.settings.server_dsn("author"))
    intruder = env.server.root_connection()
    try:
        rows = src.read(env.src, ["id"], [[1], [2]])
        cols = server.columns(env.tgt)
        actions = [plan_forward(env.pair, (str(i),), rows[f'["{i}"]'], None, cols).action for i in (1, 2)]
        assert all(a is not None for a in actions)

        calls: list[int] = []

        def publisher_inserts_key_2() -> None:  # once, committed, while the batch holds its locks
            calls.append(1)
            if len(calls) == 1:
                with intruder.cursor() as cur:
                    cur.execute("SET SESSION innodb_lock_wait_timeout = 5")
                    cur.execute(INSERT.format(t=env.tgt), article(2, title="published meanwhile"))
                intruder.commit()

        outcomes = apply_batch(server, [a for a in actions if a is not None], ["rp-race-1", "rp-race-2"],
                               after_lock=publisher_inserts_key_2)
    finally:
        intruder.close()
        server.close()
        src.close()
    by_pk = {o.action.pk: o for o in outcomes}
    assert isinstance(by_pk['["2"]'], GuardFailed)
    assert env.row(env.tgt, 2)["title"] == "published meanwhile"  # the publisher's row stands
    assert env.row(env.tgt, 1) == env.row(env.src, 1)  # the other key of the batch was repaired
    assert env.sql(f"SELECT xid FROM {env.online}.undo_log") == [("rp-race-1",)]
