"""The pure planner (forward actions from the validator's rules; compensation from binlog images), SQL builders,
backoff and throttling."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cdc_repair.config import BackoffConfig, PairConfig, TableRef
from cdc_repair.db.sql import Statement
from cdc_repair.model.history import KeyChange
from cdc_repair.model.position import BinlogPosition
from cdc_repair.model.source_event import Coordinates, SourceEvent
from cdc_repair.repair import sql as rsql
from cdc_repair.repair.actions import Op, Side, Strategy
from cdc_repair.repair.compensate import REFUSED, Unavailable, plan_compensate
from cdc_repair.repair.planner import DIRTY, plan_forward
from cdc_repair.repair.row_ops import guarded_statement
from cdc_repair.repair.store import backoff_s
from cdc_repair.repair.throttle import RateLimiter, wait_while_busy
from cdc_repair.repair.undo_log import UndoRecord

PAIR = PairConfig(name="articles", kind="publish", source=TableRef(server="a", table="wa.articles"),
                  target=TableRef(server="o", table="wo.published_articles"), key=["id"],
                  compare=["author_id", "title", "content", "status"], ignore=["ctime", "utime"])
COLS = ["id", "author_id", "title", "content", "status", "ctime", "utime"]


def art(status: int = 2, **kw: Any) -> dict[str, Any]:
    return {"id": 5, "author_id": 1, "title": "t", "content": b"c", "status": status, "ctime": 1, "utime": 2, **kw}


def test_missing_target_row_is_inserted_whole_guarded_by_absence() -> None:
    plan = plan_forward(PAIR, ("5",), art(), None, COLS)
    a = plan.action
    assert plan.kind == "missing_in_target" and a is not None
    assert (a.op, a.side, a.table, a.label, a.observed) == (Op.INSERT, Side.TARGET, "wo.published_articles",
                                                            "copy_missing", None)
    assert a.values == art()


def test_different_row_updates_only_the_differing_columns_guarded_by_the_observed_row() -> None:
    target = art(title="old", utime=1)
    a = plan_forward(PAIR, ("5",), art(title="new"), target, COLS).action
    assert a is not None and (a.op, a.label, dict(a.values)) == (Op.UPDATE, "overwrite", {"title": "new"})
    assert a.observed == target and a.written_columns == ["id", "title"]


def test_private_source_sets_only_the_target_status() -> None:
    a = plan_forward(PAIR, ("5",), art(status=3, title="edited"), art(status=2), COLS).action
    assert a is not None and (a.label, dict(a.values)) == ("set_values", {"status": 3})


def test_orphan_is_deleted_and_ok_or_draft_needs_nothing() -> None:
    a = plan_forward(PAIR, ("5",), None, art(), COLS).action
    assert a is not None and (a.op, a.label, a.written_columns) == (Op.DELETE, "delete_orphan", COLS)
    assert plan_forward(PAIR, ("5",), art(), art(), COLS).action is None
    assert plan_forward(PAIR, ("5",), art(status=1, title="draft"), art(), COLS).kind == "not_applicable"


POS = BinlogPosition("bin.000001", 100)
TYPES = {"content": "blob", "status": "tinyint"}


def event(kind: str, data: dict[str, Any], old: dict[str, Any] | None = None,
          pos: BinlogPosition = POS) -> list[SourceEvent]:
    """A stream message as the ledger keeps it, with the binlog coordinates of its header, read back as the
    ledger entry gives it (`LedgerEntry.events`)."""
    return SourceEvent.all_from_json({"type": kind, "data": [data], "old": [old] if old is not None else None,
                                      "pkNames": ["id"], "mysqlType": TYPES,
                                      "binlog": {"file": pos.file, "pos": pos.pos}})


def change(kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None, pos: int = 100,
           by_repair: bool = False) -> KeyChange:
    return KeyChange(kind, before, after, BinlogPosition("bin.000001", pos), TYPES, by_repair)


DRAFT = {"id": "5", "author_id": "1", "title": "draft", "content": "dÿ", "status": "1", "ctime": "1", "utime": "2"}
PUB = {**DRAFT, "title": "pub", "content": "bÿ", "status": "2", "utime": "3"}


def test_compensation_reverts_to_the_binlog_before_image_when_the_source_still_holds_the_after_image() -> None:
    ev = event("UPDATE", PUB, {"status": "1", "title": "draft", "content": "dÿ", "utime": "2"})
    history = [change("UPDATE", DRAFT, PUB)]
    live = art(title="pub", content="bÿ".encode("latin-1"), utime=3)
    plan = plan_compensate(PAIR, ("5",), live, None, ev, history)
    a = plan.action
    assert a is not None and (a.op, a.side, a.strategy, a.table) == (Op.UPDATE, Side.SOURCE, Strategy.COMPENSATE,
                                                                      "wa.articles")
    assert dict(a.values) == {"status": "1", "title": "draft", "content": "dÿ".encode("latin-1"), "utime": "2"}
    assert plan_compensate(PAIR, ("5",), art(status=1, title="draft"), None, ev, history).kind == "not_applicable"
    dirty = plan_compensate(PAIR, ("5",), {**live, "title": "edited again"}, None, ev, history)
    assert dirty.action is None and dirty.kind == DIRTY and "title" in dirty.reason


def test_a_message_whose_images_disagree_with_the_binlog_is_refused() -> None:
    forged = event("UPDATE", PUB, {"title": "INJECTED-BY-KAFKA", "author_id": "666", "status": "1"})
    live = art(title="pub", content="bÿ".encode("latin-1"), utime=3)
    plan = plan_compensate(PAIR, ("5",), live, None, forged, [change("UPDATE", DRAFT, PUB)])
    assert plan.action is None and plan.kind == REFUSED
    assert "disagrees with the binlog" in plan.reason and "INJECTED-BY-KAFKA" in plan.reason
    nothing = plan_compensate(PAIR, ("5",), live, None, forged, [])
    assert nothing.kind == REFUSED and "no change of key" in nothing.reason
    gone = plan_compensate(PAIR, ("5",), live, None, forged, Unavailable("binlog file bin.000001 is gone"))
    assert gone.kind == REFUSED and "gone" in gone.reason and "--strategy forward" in gone.reason
    no_coords = [replace(e, binlog=None) for e in forged]
    left = plan_compensate(PAIR, ("5",), live, None, no_coords, [change("UPDATE", DRAFT, PUB)])
    assert left.action is None and left.kind == "missing_in_target" and "coordinates" in left.reason


def test_repeated_half_done_writes_revert_to_the_last_state_consistent_with_the_target() -> None:
    v1 = {**PUB, "title": "v1"}
    v2 = {**PUB, "title": "v2", "utime": "4"}
    v3 = {**PUB, "title": "v3", "utime": "5"}
    history = [change("UPDATE", v1, v2, 100), change("UPDATE", v2, v3, 200)]
    ev = [replace(e, first_binlog=Coordinates("bin.000001", 100))
          for e in event("UPDATE", v3, {"title": "v2", "utime": "4"}, BinlogPosition("bin.000001", 200))]
    target = art(title="v1", content="bÿ".encode("latin-1"))
    live = art(title="v3", content="bÿ".encode("latin-1"), utime=5)
    a = plan_compensate(PAIR, ("5",), live, target, ev, history).action
    assert a is not None and dict(a.values) == {"title": "v1", "utime": "3"}
    later = [*history, change("UPDATE", v3, {**v3, "title": "v4"}, 300)]
    dirty = plan_compensate(PAIR, ("5",), {**live, "title": "v4"}, target, ev, later)
    assert dirty.kind == DIRTY and "changed again" in dirty.reason
    gap = [change("UPDATE", v1, {**v2, "title": "x"}, 100), change("UPDATE", v2, v3, 200)]
    assert "gap" in plan_compensate(PAIR, ("5",), live, target, ev, gap).reason
    other_target = art(title="v0", content="bÿ".encode("latin-1"))
    nowhere = plan_compensate(PAIR, ("5",), live, other_target, ev, history)
    assert nowhere.kind == REFUSED and "nothing safe to revert to" in nowhere.reason


def test_compensation_of_insert_and_delete_and_without_event() -> None:
    row = {"id": "5", "author_id": "1", "title": "t", "content": "c", "status": "2", "ctime": "1", "utime": "2"}
    a = plan_compensate(PAIR, ("5",), art(), None, event("INSERT", row), [change("INSERT", None, row)]).action
    assert a is not None and a.op is Op.DELETE
    a = plan_compensate(PAIR, ("5",), None, art(), event("DELETE", row), [change("DELETE", row, None)]).action
    assert a is not None and a.op is Op.INSERT and a.values["content"] == b"c"
    none = plan_compensate(PAIR, ("5",), art(), None, [], None)
    assert none.action is None and "--strategy forward" in none.reason


def test_guarded_sql_and_render() -> None:
    a = plan_forward(PAIR, ("5",), art(title="it's"), art(title="old"), COLS).action
    assert a is not None
    stmt = guarded_statement(a)
    assert stmt.sql.startswith("UPDATE `wo`.`published_articles` SET `title` = %s WHERE `id` = %s AND ")
    assert "`content` <=> %s" in stmt.sql and "LIMIT" not in stmt.sql  # a duplicate key shows as 2 rows
    # text is guarded by its bytes, never under the column's collation ('a' = 'A  ' there)
    assert "CAST(CONVERT(`title` USING utf8mb4) AS BINARY) <=> CAST(%s AS BINARY)" in stmt.sql
    text = rsql.render(stmt)
    assert "'it\\'s'" in text and "_binary'c'" in text and text.endswith(";")
    assert rsql.render(Statement("SELECT %s, %s", (None, b"\xff"))) == "SELECT NULL, X'ff';"
    with pytest.raises(ValueError):
        rsql.render(Statement("SELECT %s", ()))


def test_restore_statements_invert_each_kind() -> None:
    row = {"id": 1, "t": "x"}
    rec = UndoRecord(xid="x", branch_id=1, table="d.t", pk='["1"]', sql_type="INSERT", strategy="forward",
                     columns=("id", "t"), key_columns=("id",), before=None, after=row)
    assert rsql.restore_statement(rec) == Statement("DELETE FROM `d`.`t` WHERE `id` = %s LIMIT 1", (1,))
    rec2 = _fields(rec, before=row, after=None, sql_type="DELETE")
    stmt = rsql.restore_statement(rec2)
    assert stmt is not None and stmt.sql.startswith("INSERT INTO `d`.`t` (`id`, `t`) VALUES")
    rec3 = _fields(rec, before=row, after={"id": 1, "t": "y"}, sql_type="UPDATE")
    assert rsql.restore_statement(rec3) == Statement("UPDATE `d`.`t` SET `t` = %s WHERE `id` = %s LIMIT 1", ("x", 1))


def _fields(rec: UndoRecord, **kw: Any) -> UndoRecord:
    names = ("xid", "branch_id", "table", "pk", "sql_type", "strategy", "columns", "key_columns", "before", "after")
    return UndoRecord(**{**{n: getattr(rec, n) for n in names}, **kw})


def test_backoff_is_exponential_capped_and_jittered() -> None:
    cfg = BackoffConfig(initial_s=1, max_s=10, multiplier=2, jitter=0)
    assert [backoff_s(n, cfg) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 10, 10]
    jittered = [backoff_s(3, BackoffConfig(initial_s=1, max_s=100, multiplier=2, jitter=0.5)) for _ in range(200)]
    assert 2 <= min(jittered) < max(jittered) <= 6


def test_rate_limiter_paces_batches_and_busy_server_pauses() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    lim = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    lim.acquire(5)
    lim.acquire(5)
    lim.acquire(5)
    assert slept == [0.5, 0.5]
    assert RateLimiter(None).acquire(1000) == 0
    readings = iter([50, 40, 3])
    waited = wait_while_busy(lambda: next(readings), 25, poll_s=0.5, sleep=lambda s: None)
    assert waited == 1.0


def test_run_report_exit_codes_follow_pt_table_sync() -> None:
    from cdc_repair.repair.repairer import KeyResult, RunReport

    def res(status: str) -> KeyResult:
        return KeyResult("p", '["1"]', "different", status, "forward")

    assert RunReport("r", "execute").exit_code == 0  # nothing to do
    assert RunReport("r", "execute", [res("repaired"), res("resolved")]).exit_code == 0
    assert RunReport("r", "execute", [res("repaired"), res("failed")]).exit_code == 2
    assert RunReport("r", "dry-run", [res("planned")]).exit_code == 2
    assert RunReport("r", "dry-run", [res("resolved")]).exit_code == 0
