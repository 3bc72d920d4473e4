"""The guarded write path does no more work per row than its guarantees need (issue 13): the guard is the write's
own compare-and-set, not a separate locked read, and the undo record still holds the exact before-image."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import Op, RepairAction, Side
from cdc_repair.repair.executor import Applied, GuardFailed, RowServer, apply_batch
from cdc_repair.repair.undo_log import decode_image
from cdc_repair_dev.devservices.mariadb import MariaDBServer

ROWS = 40


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    yield e
    e.drop()


def _handler_reads(conn: mysql.Connection) -> int:
    """Rows this session's statements read so far (its own counters: nothing else on the server counts here)."""
    rows = mysql.fetch_all(conn, Statement("SHOW SESSION STATUS WHERE Variable_name IN "
                                           "('Handler_read_key', 'Handler_read_next', 'Handler_read_rnd_next')"))
    return sum(int(r[1]) for r in rows)


def _observed(env: Env) -> dict[int, dict[str, Any]]:
    conn = mysql.connect(env.server.dsn())
    try:
        got = mysql.fetch_dicts(conn, rsql.select_by_keys(env.tgt, ["id"], [[i] for i in range(1, ROWS + 1)]))
    finally:
        conn.close()
    return {int(r["id"]): r for r in got}


def _update(env: Env, i: int, observed: dict[str, Any]) -> RepairAction:
    return RepairAction(pair="articles", pk=f'["{i}"]', key=(("id", i),), side=Side.TARGET, table=env.tgt,
                        op=Op.UPDATE, label="overwrite", values={"title": f"new {i}"}, observed=observed)


def test_a_guarded_batch_reads_no_row_more_than_its_guarantees_need(env: Env) -> None:
    """Per row: the key-uniqueness check, the guarded write, the after-image (InnoDB counts 4 row reads for
    those); no separate locked read, no second write of the undo record when its after-image was right."""
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(1, 10 * ROWS + 1)])
    observed = _observed(env)
    server = RowServer("online", env.server.dsn())
    try:
        apply_batch(server, [_update(env, ROWS + 1, env.row(env.tgt, ROWS + 1) or {})], ["rp-warm"])  # caches
        before = _handler_reads(server.conn)
        out = apply_batch(server, [_update(env, i, observed[i]) for i in range(1, ROWS + 1)],
                          [f"rp-{i}" for i in range(1, ROWS + 1)])
        reads = _handler_reads(server.conn) - before
    finally:
        server.close()
    assert [type(o) for o in out] == [Applied] * ROWS
    assert reads <= 4 * ROWS + 5, f"{reads} row reads for {ROWS} rows"


def test_undo_before_image_is_the_replaced_row_and_a_changed_row_is_left(env: Env) -> None:
    """The before-image comes from the compare-and-set's expectation: it must equal the row as it was, byte for
    byte; a row changed after it was observed is not written and gets no undo record."""
    env.many(INSERT.format(t=env.tgt), [article(i, title=f"Title {i}  ") for i in range(1, ROWS + 1)])
    observed = _observed(env)
    env.sql(f"UPDATE {env.tgt} SET title = 'TITLE 7  ' WHERE id = 7")  # equal under the _ci collation only
    server = RowServer("online", env.server.dsn())
    try:
        out = apply_batch(server, [_update(env, i, observed[i]) for i in range(1, ROWS + 1)],
                          [f"rp-{i}" for i in range(1, ROWS + 1)])
    finally:
        server.close()
    assert [o.action.pk for o in out if isinstance(o, GuardFailed)] == ['["7"]']
    assert env.sql(f"SELECT title FROM {env.tgt} WHERE id = 7") == [("TITLE 7  ",)]
    undo = {str(r[0]): (decode_image(r[1]), decode_image(r[2])) for r in env.sql(
        f"SELECT pk, before_image, after_image FROM {env.online}.undo_log")}
    assert len(undo) == ROWS - 1 and '["7"]' not in undo
    for i in (1, 2, ROWS):
        before, after = undo[f'["{i}"]']
        assert before == observed[i]
        assert after == {**observed[i], "title": f"new {i}"}


def test_undo_after_image_is_the_row_the_server_stored(env: Env) -> None:
    """The undo records go in with the after-image the write should leave; where the server stores something else
    (here a trigger), the record ends with the row as stored, so rollback's dirty check compares the truth."""
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(1, ROWS + 1)])
    observed = _observed(env)
    env.sql(f"CREATE TRIGGER {env.online}.bump BEFORE UPDATE ON {env.tgt} FOR EACH ROW "
            f"SET NEW.utime = IF(NEW.id % 2 = 0, 777, NEW.utime)")
    server = RowServer("online", env.server.dsn())
    try:
        out = apply_batch(server, [_update(env, i, observed[i]) for i in range(1, ROWS + 1)],
                          [f"rp-{i}" for i in range(1, ROWS + 1)])
    finally:
        server.close()
    assert [type(o) for o in out] == [Applied] * ROWS
    undo = {str(r[0]): decode_image(r[1]) for r in env.sql(f"SELECT pk, after_image FROM {env.online}.undo_log")}
    for i in range(1, ROWS + 1):
        assert undo[f'["{i}"]'] == env.row(env.tgt, i)
        assert undo[f'["{i}"]']["utime"] == (777 if i % 2 == 0 else observed[i]["utime"])
