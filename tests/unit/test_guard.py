"""The pure guard and Seata-style dirty check."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from cdc_repair.repair.guard import (
    UndoDecision,
    dirty_check,
    flat_equal,
    flat_text,
    guard_holds,
    rows_equal,
    values_equal,
)


def test_values_compare_by_meaning_not_by_driver_type() -> None:
    assert values_equal(b"abc", "abc")
    assert values_equal(Decimal("1.50"), Decimal("1.5"))
    assert values_equal(2, Decimal("2.0"))
    assert values_equal(dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), dt.datetime(2024, 1, 1, 12))
    assert not values_equal(None, "")
    assert not values_equal("2", 2)  # a string is not a number
    assert not values_equal("a ", "a")


def test_rows_equal_on_chosen_columns_and_presence() -> None:
    a = {"id": 1, "title": "x", "utime": 5}
    b = {"id": 1, "title": "x", "utime": 6}
    assert rows_equal(a, b, ["id", "title"])
    assert not rows_equal(a, b)
    assert rows_equal(None, None)
    assert not rows_equal(a, None)


def test_dirty_check_has_the_four_outcomes_of_seata() -> None:
    before = {"id": 1, "status": 2, "utime": 10}
    after = {"id": 1, "status": 3, "utime": 11}
    cols = ["id", "status"]
    assert dirty_check(after, before, after, cols) is UndoDecision.UNDO
    assert dirty_check(before, before, after, cols) is UndoDecision.ALREADY_UNDONE
    assert dirty_check({"id": 1, "status": 1}, before, after, cols) is UndoDecision.DIRTY
    assert dirty_check(after, before, dict(before), cols) is UndoDecision.NO_CHANGE
    # an ON UPDATE CURRENT_TIMESTAMP column that moved since is not a reason for "dirty": not a written column
    assert dirty_check({**after, "utime": 99}, before, after, cols) is UndoDecision.UNDO


def test_dirty_check_for_insert_and_delete_images() -> None:
    row = {"id": 1, "t": "x"}
    assert dirty_check(row, None, row, ["id", "t"]) is UndoDecision.UNDO  # inserted row still there
    assert dirty_check(None, None, row, ["id", "t"]) is UndoDecision.ALREADY_UNDONE
    assert dirty_check(None, row, None, ["id", "t"]) is UndoDecision.UNDO  # deleted row still gone
    assert dirty_check({"id": 1, "t": "y"}, row, None, ["id", "t"]) is UndoDecision.DIRTY


def test_guard_compares_the_whole_observed_row() -> None:
    seen = {"id": 1, "title": "a", "utime": 1}
    assert guard_holds(dict(seen), seen)
    assert not guard_holds({**seen, "utime": 2}, seen)
    assert guard_holds(None, None)
    assert not guard_holds(seen, None)  # insert-if-absent: someone inserted meanwhile


def test_flat_values_match_live_values() -> None:
    assert flat_text(dt.datetime(2024, 1, 2, 3, 4, 5, 600)) == "2024-01-02 03:04:05.000600"
    assert flat_text(Decimal("1.10")) == "1.10"
    assert flat_equal(2, "2") and flat_equal(Decimal("2.50"), "2.5")
    assert flat_equal(dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05.000000")
    assert not flat_equal(2, "3") and not flat_equal(None, "") and flat_equal(None, None)
