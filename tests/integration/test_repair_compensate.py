"""AT-style compensation against the real MariaDB: revert the source from the binlog change's before-image."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import settings_from_mapping
from cdc_repair.model.keys import pk_string
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair_dev.devservices.mariadb import MariaDBServer

MYSQL_TYPES = {"id": "bigint", "author_id": "bigint", "title": "varchar(4096)", "content": "blob",
               "status": "tinyint", "ctime": "bigint", "utime": "bigint"}


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def binlog_position(env: Env) -> dict[str, Any]:
    """Where the next transaction starts (what the tailer puts in a message's `cdc-repair-binlog` header)."""
    file, pos = env.sql("SHOW MASTER STATUS")[0][:2]
    return {"file": file, "pos": int(pos)}


def flat(env: Env, kind: str, data: dict[str, Any], old: dict[str, Any] | None = None,
         binlog: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the validator stores in ledger.source_event for one row change: the FlatMessage's row slice
    `{type, database, table, es, data: row, old: changed columns}` (values as strings, binary as latin-1, and
    no mysqlType) and the binlog coordinates from the record's header (`binlog`)."""
    def text(v: Any) -> str | None:
        if v is None:
            return None
        return v.decode("latin-1") if isinstance(v, bytes) else str(v)

    msg = FlatMessage(database=env.author, table="articles", type=kind,
                      data=[{k: text(v) for k, v in data.items()}],
                      old=[{k: text(v) for k, v in old.items()}] if old is not None else None,
                      pk_names=["id"], mysql_type=MYSQL_TYPES, es=1, ts=1)
    doc = msg.to_dict()
    return {"type": doc["type"], "database": doc["database"], "table": doc["table"], "es": doc["es"],
            "data": doc["data"][0], "old": doc["old"][0] if doc["old"] else None, "binlog": binlog}


def half_done_publish(env: Env, i: int, *, previously_published: bool,
                      title: str = "published title") -> dict[str, Any]:
    """The author publishes: the source row is updated to status 2 / new text, the online write fails."""
    draft = env.row(env.src, i)
    assert draft is not None
    published = {**draft, "status": 2, "title": title, "content": "ünïcode body".encode(),
                 "utime": draft["utime"] + 1}
    where = binlog_position(env)
    env.sql(f"UPDATE {env.src} SET status = 2, title = %s, content = %s, utime = %s WHERE id = %s",
            (published["title"], published["content"], published["utime"], i))
    old = {c: draft[c] for c in ("status", "title", "content", "utime") if draft[c] != published[c]}
    if previously_published:
        old.pop("status", None)
    return flat(env, "UPDATE", published, old, where)


def test_compensation_restores_the_pre_publish_source_row(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(10, status=1, title="draft v1", content="brouillon é ñ \x00".encode()),
                                         article(11, status=2, title="live v1")])
    env.many(INSERT.format(t=env.tgt), [article(11, status=2, title="live v1")])
    before = {i: env.row(env.src, i) for i in (10, 11)}
    events = {pk_string([10]): half_done_publish(env, 10, previously_published=False),
              pk_string([11]): half_done_publish(env, 11, previously_published=True)}
    recorded = env.record([10, 11], source_events=events)
    assert [v.kind for v in recorded] == ["missing_in_target", "different"]

    plan = run_repair(env.settings, strategy="compensate", mode="print")
    assert all(s.startswith(f"UPDATE `{env.author}`.`articles`") for r in plan.results for s in r.sql)

    report = run_repair(env.settings, strategy="compensate", mode="execute")
    assert report.exit_code == 0, report.to_json()
    assert {r.pk: r.status for r in report.results} == {pk_string([10]): "repaired", pk_string([11]): "repaired"}
    assert {i: env.row(env.src, i) for i in (10, 11)} == before  # exactly the pre-publish rows
    assert env.row(env.tgt, 10) is None  # the target was not touched
    assert [v for v in env.verdicts([10, 11]) if v.is_mismatch] == []
    undo = env.sql(f"SELECT pk, sql_type, strategy FROM {env.author}.undo_log ORDER BY pk")
    assert undo == [('["10"]', "UPDATE", "compensate"), ('["11"]', "UPDATE", "compensate")]

    # the compensation itself can be rolled back (back to the published source state)
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, report.run_id)
    finally:
        store.close()
    assert [i.outcome for i in back.items] == ["undone", "undone"]
    assert env.row(env.src, 10)["title"] == "published title"


def test_compensation_of_a_source_changed_since_is_dirty_and_parked(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(10, status=1, title="draft v1")])
    event = half_done_publish(env, 10, previously_published=False)
    env.record([10], source_events={pk_string([10]): event})
    env.sql(f"UPDATE {env.src} SET title = 'author edited again' WHERE id = 10")
    changed = env.row(env.src, 10)

    report = run_repair(env.settings, strategy="compensate", mode="execute")
    [res] = report.results
    assert res.status == "dirty" and "title" in res.reason and report.exit_code == 2
    assert env.row(env.src, 10) == changed  # nothing written
    led = env.ledger()[pk_string([10])]
    assert led["status"] == "failed" and led["last_error"].startswith("dirty")  # parked for an operator


def test_compensation_without_a_recorded_change_leaves_the_entry_and_says_why(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(12)])
    env.record([12])
    report = run_repair(env.settings, strategy="compensate", mode="execute")
    [res] = report.results
    assert res.status == "left" and "--strategy forward" in res.reason
    assert env.ledger()[pk_string([12])]["status"] == "open"


def test_pair_strategy_from_config_and_compensating_an_insert(env: Env) -> None:
    where = binlog_position(env)
    env.many(INSERT.format(t=env.src), [article(13)])  # inserted as published, never reached the target
    event = flat(env, "INSERT", env.row(env.src, 13) or {}, binlog=where)
    env.record([13], source_events={pk_string([13]): event})
    raw_pairs = [dict(env.raw["pairs"][0], strategy="compensate")]
    env2 = settings_from_mapping({**env.raw, "pairs": raw_pairs})
    report = run_repair(env2, mode="execute")
    assert [(r.status, r.strategy) for r in report.results] == [("repaired", "compensate")]
    assert env.row(env.src, 13) is None and env.row(env.tgt, 13) is None


def test_repeated_half_done_publishes_revert_to_the_state_before_the_first(env: Env) -> None:
    """An author retried a failed publish twice: all three source writes are undone, back to the row the
    online table still shows (issue 11 item 5); the undo record allows rolling the compensation back."""
    env.many(INSERT.format(t=env.src), [article(20, status=2, title="live v1")])
    env.many(INSERT.format(t=env.tgt), [article(20, status=2, title="live v1")])
    before = env.row(env.src, 20)
    for n in (2, 3, 4):  # each publish is recorded by the validator (the ledger entry stays open)
        event = half_done_publish(env, 20, previously_published=True, title=f"live v{n}")
        env.record([20], source_events={pk_string([20]): event})
    assert env.row(env.src, 20)["title"] == "live v4"

    report = run_repair(env.settings, strategy="compensate", mode="execute")
    assert [r.status for r in report.results] == ["repaired"], report.to_json()
    assert env.row(env.src, 20) == before  # the state before the first half-done write, byte for byte
    assert [v for v in env.verdicts([20]) if v.is_mismatch] == []
    undo = env.sql(f"SELECT sql_type, strategy FROM {env.author}.undo_log WHERE pk = %s", (pk_string([20]),))
    assert undo == [("UPDATE", "compensate")]

    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, report.run_id)
    finally:
        store.close()
    assert [i.outcome for i in back.items] == ["undone"]
    assert env.row(env.src, 20)["title"] == "live v4"


def test_compensation_refuses_values_the_binlog_does_not_hold(env: Env) -> None:
    """The ledger's message says the change set `old` values the binlog never had (a forged Kafka message),
    or points at a binlog file the server no longer has: nothing is written, the refusal is in the ledger."""
    env.many(INSERT.format(t=env.src), [article(30, status=1, title="draft 30"), article(31, status=1)])
    real = half_done_publish(env, 30, previously_published=False)
    forged = {**real, "old": {"title": "INJECTED-BY-KAFKA", "author_id": "666", "status": "1"}}
    gone = {**half_done_publish(env, 31, previously_published=False),
            "binlog": {"file": "binlog.000000", "pos": 4}}
    env.record([30, 31], source_events={pk_string([30]): forged, pk_string([31]): gone})
    published = {i: env.row(env.src, i) for i in (30, 31)}

    report = run_repair(env.settings, strategy="compensate", mode="execute")
    assert {r.pk: r.status for r in report.results} == {pk_string([30]): "refused", pk_string([31]): "refused"}
    assert report.exit_code == 2
    assert {i: env.row(env.src, i) for i in (30, 31)} == published  # nothing written
    led = env.ledger()
    assert led[pk_string([30])]["status"] == "failed"
    assert "disagrees with the binlog" in led[pk_string([30])]["last_error"]
    assert "INJECTED-BY-KAFKA" in led[pk_string([30])]["last_error"]
    assert led[pk_string([31])]["status"] == "failed"
    assert "no longer on server" in led[pk_string([31])]["last_error"]


def test_compensation_restores_enum_and_set_columns_published_as_canal_index_and_bitmask(env: Env) -> None:
    """The tailer writes ENUM as its index and SET as its bitmask (Canal); compensation must write names back."""
    env.sql(f"ALTER TABLE {env.src} ADD COLUMN e ENUM('red','green','blue') NULL, ADD COLUMN s SET('a','b','c') NULL")
    env.many(INSERT.format(t=env.src), [article(20, status=1, title="draft")])
    env.sql(f"UPDATE {env.src} SET e = 'green', s = 'a,c' WHERE id = 20")
    draft = env.row(env.src, 20) or {}
    where = binlog_position(env)
    env.sql(f"UPDATE {env.src} SET status = 2, title = 'published', e = 'blue', s = 'b' WHERE id = 20")
    published = env.row(env.src, 20) or {}
    text = {k: (v.decode("latin-1") if isinstance(v, bytes) else str(v)) for k, v in published.items()}
    event = {"type": "UPDATE", "database": env.author, "table": "articles", "es": 1,
             "data": {**text, "e": "3", "s": "2"},
             "old": {"status": str(draft["status"]), "title": draft["title"], "e": "2", "s": "5"},
             "mysqlType": {**MYSQL_TYPES, "e": "enum('red','green','blue')", "s": "set('a','b','c')"},
             "sqlType": {"id": -5, "author_id": -5, "title": 12, "content": 2004, "status": -6, "ctime": -5,
                         "utime": -5, "e": 4, "s": -7},
             "binlog": where}
    env.record([20], source_events={pk_string([20]): event})
    report = run_repair(env.settings, strategy="compensate", mode="execute")
    assert [r.status for r in report.results] == ["repaired"], report.to_json()
    assert env.sql(f"SELECT status, title, e, s FROM {env.src} WHERE id = 20") == [(1, "draft", "green", "a,c")]
