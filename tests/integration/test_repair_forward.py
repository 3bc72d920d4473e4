"""Forward repair against the real MariaDB: every publish-contract kind, dry-run/print/execute, guards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.model.keys import pk_string
from cdc_repair.repair.repairer import Repairer, WorkItem
from cdc_repair.repair.store import StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def seed_every_kind(env: Env) -> None:
    """1 missing, 2 different, 3 private but online still published, 4 orphan, 5 draft (no expectation), 6 ok."""
    env.many(INSERT.format(t=env.src), [article(1), article(2, title="new title"), article(3, status=3),
                                         article(5, status=1, title="draft edit"), article(6)])
    env.many(INSERT.format(t=env.tgt), [article(2), article(3, status=2), article(4), article(5), article(6)])


def test_every_publish_kind_is_repaired_and_a_check_afterwards_is_clean(env: Env) -> None:
    seed_every_kind(env)
    recorded = env.record(range(1, 7))
    assert sorted(v.kind for v in recorded if v.is_mismatch) == ["different", "different", "extra_in_target",
                                                                  "missing_in_target"]
    before_target = {i: env.row(env.tgt, i) for i in range(1, 7)}

    plan = run_repair(env.settings)  # default: dry run
    assert plan.exit_code == 2
    assert {r.pk: r.status for r in plan.results} == {pk_string([i]): "planned" for i in (1, 2, 3, 4)}
    assert {i: env.row(env.tgt, i) for i in range(1, 7)} == before_target  # nothing written

    report = run_repair(env.settings, mode="execute")
    assert report.exit_code == 0, report.to_json()
    assert {r.pk: r.status for r in report.results} == {pk_string([i]): "repaired" for i in (1, 2, 3, 4)}
    assert [v.kind for v in env.verdicts(range(1, 7)) if v.is_mismatch] == []

    assert env.row(env.tgt, 1) == env.row(env.src, 1)  # copied whole, ctime/utime included
    assert env.row(env.tgt, 2)["title"] == "new title"
    assert env.row(env.tgt, 2)["utime"] == before_target[2]["utime"]  # only differing columns are written
    assert env.row(env.tgt, 3) == {**before_target[3], "status": 3}  # withdrawn: only status changes
    assert env.row(env.tgt, 4) is None  # orphan deleted
    assert env.row(env.tgt, 5) == before_target[5]  # draft: the last published version stays online

    led = env.ledger()
    assert {pk: e["status"] for pk, e in led.items()} == {pk_string([i]): "repaired" for i in (1, 2, 3, 4)}
    undo = env.sql(f"SELECT xid, pk, sql_type, strategy, log_status, before_image, after_image "
                   f"FROM {env.online}.undo_log ORDER BY pk")
    assert [(u[1], u[2], u[3], u[4]) for u in undo] == [
        ('["1"]', "INSERT", "forward", 0), ('["2"]', "UPDATE", "forward", 0), ('["3"]', "UPDATE", "forward", 0),
        ('["4"]', "DELETE", "forward", 0)]
    assert {u[1]: u[0] for u in undo} == {pk: e["repair_id"] for pk, e in led.items()}
    before3 = orjson.loads(undo[2][5])["rows"][0]["fields"]
    assert {f["name"]: (f["type"], f["sqlType"], f["value"]) for f in before3}["status"] == ("int", "tinyint(4)", 2)
    assert {f["name"]: f["sqlType"] for f in before3}["content"] == "blob"
    assert orjson.loads(undo[0][5])["rows"] == []  # insert: empty before-image
    assert orjson.loads(undo[3][6])["rows"] == []  # delete: empty after-image
    logged = env.sql(f"SELECT repair_id, run_id, status, strategy, side FROM {env.prefix}_state.repair_log")
    assert sorted(r[0] for r in logged) == sorted(u[0] for u in undo)
    assert {(r[1], r[2], r[3], r[4]) for r in logged} == {(report.run_id, "applied", "forward", "target")}

    again = run_repair(env.settings, mode="execute")  # idempotent: nothing left to do
    assert again.results == [] and again.exit_code == 0


def test_print_emits_guarded_sql_that_repairs_when_run_by_hand(env: Env) -> None:
    seed_every_kind(env)
    env.record(range(1, 7))
    report = run_repair(env.settings, mode="print")
    statements = [s for r in report.results for s in r.sql]
    assert len(statements) == 4
    assert any(s.startswith("INSERT INTO") and "WHERE NOT EXISTS" in s for s in statements)
    assert any(s.startswith("DELETE FROM") and "<=>" in s and "LIMIT" not in s for s in statements)
    assert env.verdicts([1])[0].kind == "missing_in_target"  # --print writes nothing
    for stmt in statements:
        env.sql(stmt)
    assert [v for v in env.verdicts(range(1, 7)) if v.is_mismatch] == []
    for stmt in statements:  # the guard: running them again changes nothing
        env.sql(stmt)
        assert env.sql("SELECT ROW_COUNT()")[0][0] in (0, -1)


def test_filters_by_kind_and_key(env: Env) -> None:
    seed_every_kind(env)
    env.record(range(1, 7))
    only_orphans = run_repair(env.settings, mode="execute", kinds=("extra_in_target",))
    assert [r.pk for r in only_orphans.results] == [pk_string([4])]
    one = run_repair(env.settings, mode="execute", pair_names=("articles",), keys=("2",))
    assert [(r.pk, r.status) for r in one.results] == [(pk_string([2]), "repaired")]
    left = run_repair(env.settings)
    assert sorted(r.pk for r in left.results) == [pk_string([1]), pk_string([3])]


def test_key_without_ledger_entry_is_checked_and_repaired(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(7)])
    report = run_repair(env.settings, mode="execute", pair_names=("articles",), keys=("7", "8"))
    assert {r.pk: r.status for r in report.results} == {pk_string([7]): "repaired", pk_string([8]): "resolved"}
    assert env.row(env.tgt, 7) == env.row(env.src, 7)


def _repair_with_writer(env: Env, ids: list[int], writer: Any) -> list[Any]:
    store = StateStore(env.settings.state.dsn)
    calls: list[int] = []

    def hook(batch: Any) -> None:
        if not calls:
            writer()
        calls.append(len(batch))

    repairer = Repairer(env.settings, store, before_write=hook)
    try:
        items = [WorkItem("articles", pk_string([i])) for i in ids]
        return repairer.execute(env.pair, items, repairer.strategy_for(env.pair))
    finally:
        repairer.close()
        store.close()


def test_guard_keeps_a_concurrent_newer_publish_of_both_sides(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="v1")])
    env.many(INSERT.format(t=env.tgt), [article(1, title="v0")])

    def publisher_retry() -> None:  # between plan and write: the publisher writes v2 to both tables
        env.sql(f"UPDATE {env.src} SET title = 'v2', utime = 9999 WHERE id = 1")
        env.sql(f"UPDATE {env.tgt} SET title = 'v2', utime = 9999 WHERE id = 1")

    [res] = _repair_with_writer(env, [1], publisher_retry)
    assert res.status == "resolved" and res.repair_ids == []  # guard failed, re-check found it consistent
    assert env.row(env.tgt, 1)["title"] == "v2"  # the newer write was not overwritten by the v1 plan
    assert env.sql(f"SELECT COUNT(*) FROM {env.online}.undo_log")[0][0] == 0


def test_guard_failure_rechecks_and_repairs_from_the_newest_rows(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="v1")])
    env.many(INSERT.format(t=env.tgt), [article(1, title="v0")])

    def stale_writer() -> None:  # a late writer puts something else online
        env.sql(f"UPDATE {env.tgt} SET title = 'stale', content = 'x' WHERE id = 1")

    [res] = _repair_with_writer(env, [1], stale_writer)
    assert res.status == "repaired" and len(res.repair_ids) == 1
    assert env.row(env.tgt, 1)["title"] == "v1"
    [(before,)] = env.sql(f"SELECT before_image FROM {env.online}.undo_log")
    fields = {f["name"]: f["value"] for f in orjson.loads(before)["rows"][0]["fields"]}
    assert fields["title"] == "stale"  # the write that happened was guarded by what was really there


def test_source_change_between_plan_and_write_ends_consistent_with_the_newest_source(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="v1")])

    def author_edit() -> None:
        env.sql(f"UPDATE {env.src} SET title = 'v2' WHERE id = 1")

    [res] = _repair_with_writer(env, [1], author_edit)
    assert res.status == "repaired" and len(res.repair_ids) == 2  # v1 inserted, re-check, v2 written
    assert env.row(env.tgt, 1)["title"] == "v2"
    assert [v for v in env.verdicts([1]) if v.is_mismatch] == []


def test_a_bad_row_does_not_lose_the_rest_of_its_batch(env: Env) -> None:
    env.sql(f"ALTER TABLE {env.tgt} MODIFY title VARCHAR(10)")
    env.sql("SET SESSION sql_mode = ''")
    env.many(INSERT.format(t=env.src), [article(1), article(2, title="far too long for ten"), article(3)])
    env.record([1, 2, 3])
    report = run_repair(env.settings, mode="execute")
    assert {r.pk: r.status for r in report.results} == {pk_string([1]): "repaired", pk_string([2]): "failed",
                                                         pk_string([3]): "repaired"}
    assert "Data too long" in next(r.reason for r in report.results if r.status == "failed")
    assert report.exit_code == 2
    led = env.ledger()[pk_string([2])]
    assert (led["status"], led["attempts"]) == ("open", 1) and led["next_retry_at"] is not None
    logged = env.sql(f"SELECT pk, status, error FROM {env.prefix}_state.repair_log ORDER BY pk")
    assert [(r[0], r[1]) for r in logged] == [(pk_string([1]), "applied"), (pk_string([2]), "failed"),
                                              (pk_string([3]), "applied")]
    assert "Data too long" in logged[1][2]
    assert env.sql(f"SELECT COUNT(*) FROM {env.online}.undo_log WHERE pk = %s", (pk_string([2]),)) == [(0,)]
