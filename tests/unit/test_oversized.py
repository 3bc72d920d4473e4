"""The oversized-value marker (pure): which values are replaced, and that keys and small values never are."""

from __future__ import annotations

import json

from cdc_repair.model.oversized import OVERSIZED_MARKER, bound_event, has_marker, shrink_images


def test_shrink_replaces_the_largest_values_first_and_never_a_key() -> None:
    row = {"id": "1" * 50_000, "a": "x" * 30_000, "b": "y" * 3072, "c": None}
    old = {"a": "z" * 40_000}
    (new_row, new_old), replaced = shrink_images([row, old], 35_000, keep=["id"])
    assert new_old == {"a": OVERSIZED_MARKER}  # the 40000-byte before-value alone saves enough
    assert new_row == row and replaced == ["a"]
    (new_row, new_old), replaced = shrink_images([row, old], 60_000, keep=["id"])
    assert new_row == {"id": row["id"], "a": OVERSIZED_MARKER, "b": "y" * 3072, "c": None}
    assert replaced == ["a"] and row["a"] == "x" * 30_000  # inputs are not modified


def test_shrink_never_replaces_a_value_an_index_could_hold() -> None:
    (new_row, _), replaced = shrink_images([{"id": "1", "a": "ab", "u": "é" * 3072}, None], 10_000, keep=["id"])
    assert new_row == {"id": "1", "a": "ab", "u": "é" * 3072} and replaced == []


def test_bound_event_measures_the_stored_json_and_lists_what_it_replaced() -> None:
    small = {"type": "UPDATE", "data": {"id": "1", "body": "\xff" * 100}, "old": {"body": "\x00"}}
    assert bound_event(small, 10_000) is small
    big = {"type": "UPDATE", "data": {"id": "1", "body": "\xff" * 4000, "v": "2"}, "old": {"v": "1"}}
    assert len(json.dumps(big)) > 20_000 > len(json.dumps(big, ensure_ascii=False).encode())  # \u00ff: 6 bytes
    bounded = bound_event(big, 20_000)
    assert bounded["data"] == {"id": "1", "body": OVERSIZED_MARKER, "v": "2"} and bounded["old"] == {"v": "1"}
    assert bounded["oversized"] == ["body"] and len(json.dumps(bounded)) <= 20_000
    assert has_marker(bounded["data"], bounded["old"]) == ["body"] and has_marker(big["data"], None) == []
    assert bound_event(None) is None and bound_event({"type": "X", "pos": 4}, 1) == {"type": "X", "pos": 4}


# ---------------------------------------------------------------- statement DML (binlog_format STATEMENT/MIXED)


def test_classify_dml_names_the_tables_a_statement_writes() -> None:
    from cdc_repair.source.statements import StatementDml, classify_dml

    assert classify_dml("BEGIN", "d") is None and classify_dml("ALTER TABLE t ADD c INT", "d") is None
    assert classify_dml("/* c */ INSERT IGNORE INTO `s`.`t` VALUES (1)", "d") == StatementDml(
        "INSERT", (("s", "t"),), True)
    assert classify_dml("replace t (a) select 1", "d") == StatementDml("REPLACE", (("d", "t"),), True)
    assert classify_dml("UPDATE a.t1 x JOIN t2 y ON x.id = y.id LEFT JOIN `b`.t3 USING (id) SET x.v = 1", "d") \
        == StatementDml("UPDATE", (("a", "t1"), ("d", "t2"), ("b", "t3")), True)
    assert classify_dml("UPDATE t1, s.t2 SET t1.v = 2", "d") == StatementDml("UPDATE", (("d", "t1"), ("s", "t2")),
                                                                             True)
    assert classify_dml("DELETE QUICK FROM s.t WHERE id = 1", "d") == StatementDml("DELETE", (("s", "t"),), True)
    assert classify_dml("DELETE FROM t", "d") == StatementDml("DELETE", (("d", "t"),), True)
    assert classify_dml("DELETE t1 FROM t1 JOIN t2 USING (id)", "d") == StatementDml("DELETE", (), False)
    assert classify_dml("LOAD DATA INFILE '/x' INTO TABLE s.t", "d") == StatementDml("LOAD", (("s", "t"),), True)
    assert classify_dml("WITH c AS (SELECT 1) UPDATE t SET v = 1", "d") == StatementDml("WITH", (), False)


def test_bound_event_lists_values_marked_upstream() -> None:
    event = {"type": "INSERT", "data": {"id": "1", "body": OVERSIZED_MARKER}, "old": None}
    assert bound_event(event)["oversized"] == ["body"]


def test_compensation_never_writes_the_marker_back() -> None:
    """Compensation writes values re-read from the binlog (repair/compensate.py), never the message's: a marked
    column is not compared with the binlog and the real value is the one written back."""
    from cdc_repair.config import PairConfig, TableRef
    from cdc_repair.model.history import KeyChange
    from cdc_repair.model.position import BinlogPosition
    from cdc_repair.model.source_event import SourceEvent
    from cdc_repair.repair.compensate import plan_compensate

    pair = PairConfig(name="items", kind="mirror", source=TableRef(server="a", table="d.items"),
                      target=TableRef(server="o", table="o.items"), key=["id"])
    deleted = {"type": "DELETE", "data": {"id": "5", "v": "1", "body": OVERSIZED_MARKER}, "old": None,
               "oversized": ["body"], "binlog": {"file": "bin.000001", "pos": 4}}
    row = {"id": "5", "v": "1", "body": "x" * 10}
    history = [KeyChange("DELETE", row, None, BinlogPosition("bin.000001", 4), {"body": "longblob"})]
    events = SourceEvent.all_from_json(deleted)  # as the ledger entry gives it back
    plan = plan_compensate(pair, ("5",), None, {"id": 5, "v": 1, "body": b"x" * 10}, events, history)
    assert plan.action is not None and plan.action.values["body"] == b"x" * 10
    assert OVERSIZED_MARKER not in plan.action.values.values()
