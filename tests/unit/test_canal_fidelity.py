"""Pure parts of Canal fidelity: transaction grouping, Java number text, ENUM/SET, declared types, partitions."""

from __future__ import annotations

import struct

import orjson
import pytest

from cdc_repair.model.canal_values import enum_set_members, label_value
from cdc_repair.model.schema import ColumnSpec, TableSchema
from cdc_repair.sink.flat_message import encode_ddl, encode_dml, image_rows, parse_flat_message, update_rows
from cdc_repair.sink.grouping import Group, TransactionGrouper
from cdc_repair.sink.partitioning import hash_seed, partition_for, partitions_of
from cdc_repair.source import types as T
from cdc_repair.source.decoder import RowDecoder, double_text, float_text

# ---------------------------------------------------------------- grouping


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _row(i: int) -> dict[str, str | None]:
    return {"id": str(i)}


def _rows_of(groups: list[Group]) -> list[list[str | None]]:
    return [[r["id"] for part in g.parts.values() for r in part.rows] for g in groups]


def test_default_closes_every_group_at_its_commit_and_names_that_transaction() -> None:
    g = TransactionGrouper()
    sent: list[Group] = []
    for n, gtid in enumerate(("0-1-506", "0-1-507", "0-1-508")):
        g.begin(gtid)
        kind = ("INSERT", "UPDATE", "DELETE")[n]
        assert g.add("t", kind, [_row(1)], [{}] if kind == "UPDATE" else None, [0], 1000 + n, 10) == []
        sent += g.commit()
    assert [(s.kind, s.gtid, s.txn_id, s.es) for s in sent] == [
        ("INSERT", "0-1-506", 1, 1000), ("UPDATE", "0-1-507", 2, 1001), ("DELETE", "0-1-508", 3, 1002)]
    assert not g.pending


def test_default_merges_rows_events_of_one_transaction_but_not_two() -> None:
    g = TransactionGrouper()
    g.begin("0-1-1")
    assert g.add("t", "INSERT", [_row(1), _row(2)], None, [0, 1], 5, 10) == []
    assert g.add("t", "INSERT", [_row(3)], None, [0], 6, 10) == []
    first = g.commit()
    g.begin("0-1-2")
    g.add("t", "INSERT", [_row(4)], None, [0], 7, 10)
    second = g.commit()
    assert _rows_of(first) == [["1", "3", "2"]] and first[0].events == 2
    assert {p: [r["id"] for r in part.rows] for p, part in first[0].parts.items()} == {0: ["1", "3"], 1: ["2"]}
    assert _rows_of(second) == [["4"]] and second[0].gtid == "0-1-2"


def test_a_new_table_or_type_or_a_cap_closes_the_group_inside_a_transaction() -> None:
    g = TransactionGrouper(max_rows=2)
    g.begin("0-1-1")
    assert g.add("a", "INSERT", [_row(1)], None, [0], 1, 1) == []
    closed = g.add("b", "INSERT", [_row(2)], None, [0], 1, 1)
    assert _rows_of(closed) == [["1"]]
    closed = g.add("b", "DELETE", [_row(3), _row(4)], None, [0, 0], 1, 1)
    assert _rows_of(closed) == [["2"]]
    closed = g.add("b", "DELETE", [_row(5)], None, [0], 1, 1)  # the open group holds max_rows already
    assert _rows_of(closed) == [["3", "4"]]
    assert _rows_of(g.commit()) == [["5"]]


def test_update_rows_keep_old_aligned_per_partition() -> None:
    g = TransactionGrouper()
    g.begin("x")
    g.add("t", "UPDATE", [_row(1), _row(2), _row(3)], [{"v": "a"}, {"v": "b"}, {"v": "c"}], [1, 0, 1], 1, 1)
    (group,) = g.commit()
    assert {p: (part.rows, part.olds) for p, part in group.parts.items()} == {
        1: ([_row(1), _row(3)], [{"v": "a"}, {"v": "c"}]), 0: ([_row(2)], [{"v": "b"}])}


def test_cross_transaction_option_holds_until_old_enough_and_names_the_last_transaction_per_partition() -> None:
    clock = Clock()
    g = TransactionGrouper(across_transactions=True, max_age_s=0.05, clock=clock)
    g.begin("0-1-1")
    g.add("t", "INSERT", [_row(1)], None, [0], 100, 1)
    assert g.commit() == [] and g.pending
    g.begin("0-1-2")
    g.add("t", "INSERT", [_row(2)], None, [1], 200, 1)
    assert g.commit() == []
    clock.now = 0.06
    g.begin("0-1-3")
    g.add("t", "INSERT", [_row(3)], None, [1], 300, 1)
    (group,) = g.commit()
    assert (group.gtid, group.txn_id) == ("0-1-3", 3)
    assert {p: (part.gtid, part.txn_id, part.es) for p, part in group.parts.items()} == {
        0: ("0-1-1", 1, 100), 1: ("0-1-3", 3, 300)}


def test_flush_sends_whatever_is_open_and_discard_forgets_it() -> None:
    g = TransactionGrouper(across_transactions=True, clock=Clock())
    g.begin("a")
    g.add("t", "INSERT", [_row(1)], None, [0], 1, 1)
    g.commit()
    assert _rows_of(g.flush()) == [["1"]] and g.flush() == []
    g.begin("b")
    g.add("t", "INSERT", [_row(2)], None, [0], 1, 1)
    g.discard()
    assert not g.pending and g.commit() == []


def test_rows_without_a_gtid_event_start_a_transaction_of_their_own() -> None:
    g = TransactionGrouper()
    g.begin("0-1-9")
    g.add("t", "INSERT", [_row(1)], None, [0], 1, 1)
    g.commit()
    g.add("t", "INSERT", [_row(2)], None, [0], 1, 1)  # GTIDs off from here on
    (group,) = g.commit()
    assert (group.gtid, group.txn_id) == ("", 2)


# ---------------------------------------------------------------- Java number text (Float/Double.toString)

def _f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.mark.parametrize(("value", "text"), [
    (1e7, "1.0E7"), (1e-5, "1.0E-5"), (123456789.0, "1.23456789E8"), (0.001, "0.001"), (1e-4, "1.0E-4"),
    (9999999.0, "9999999.0"), (1.5, "1.5"), (-2.25, "-2.25"), (100.0, "100.0"), (0.1, "0.1"), (1e22, "1.0E22"),
    (12345678.9, "1.23456789E7"), (0.0, "0.0"), (-0.0, "-0.0"), (5e-324, "4.9E-324"),
    (1.7976931348623157e308, "1.7976931348623157E308"), (3.14159, "3.14159"),
])
def test_double_text_is_javas_double_to_string(value: float, text: str) -> None:
    assert double_text(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (3.4e38, "3.4E38"), (1e7, "1.0E7"), (1e-5, "1.0E-5"), (123456789.0, "1.2345679E8"), (0.1, "0.1"),
    (5.18, "5.18"), (3.0, "3.0"), (1e10, "1.0E10"), (1.4e-45, "1.4E-45"), (16777217.0, "1.6777216E7"),
])
def test_float_text_is_javas_float_to_string(value: float, text: str) -> None:
    assert float_text(_f32(value)) == text


# ---------------------------------------------------------------- ENUM / SET

def _enum_set_schema() -> TableSchema:
    return TableSchema(1, "db", "t", (
        ColumnSpec("id", T.LONG, "int(11)", 4, is_pk=True),
        ColumnSpec("e", T.ENUM, "enum('r','g','b')", 4, size=1, values=("r", "g", "b")),
        ColumnSpec("s", T.SET, "set('a','b','c','d')", -7, size=1, values=("a", "b", "c", "d")),
    ))


def test_enum_index_and_set_bitmask_by_default_labels_as_an_option() -> None:
    body = bytes([0]) + (7).to_bytes(4, "little") + bytes([2, 0b1101]) \
        + bytes([0]) + (8).to_bytes(4, "little") + bytes([0, 0])
    canal = RowDecoder(_enum_set_schema())
    assert canal.images(body, 0, len(body)) == [("7", "2", "13"), ("8", "0", "0")]
    assert (canal.sql_type["e"], canal.sql_type["s"]) == (4, -7)
    labels = RowDecoder(_enum_set_schema(), enum_labels=True)
    assert labels.images(body, 0, len(body)) == [("7", "g", "a,c,d"), ("8", "", "")]
    assert (labels.sql_type["e"], labels.sql_type["s"]) == (12, 12)


# ---------------------------------------------------------------- declared mysqlType

COLUMNS = (("id", T.LONG, False, "int(11)"), ("flag", T.TINY, False, "tinyint(4)"),
           ("z", T.LONG, True, "int(10) unsigned"), ("dd", T.DOUBLE, False, "double"),
           ("p", T.GEOMETRY, False, "geometry"), ("vc", T.VARCHAR, False, "varchar(20)"),
           ("e", T.ENUM, False, "enum('a','b')"))
DECLARED = [("id", "int", "int(5)"), ("flag", "tinyint", "tinyint(1)"), ("z", "int", "int(6) unsigned zerofill"),
            ("dd", "double", "double(10,2)"), ("p", "point", "point"), ("vc", "varchar", "varchar(20)"),
            ("e", "enum", "enum('a','b')")]


def test_declared_types_are_used_while_they_describe_the_table_map() -> None:
    assert T.declared_mysql_types(COLUMNS, DECLARED) == {
        "id": "int(5)", "flag": "tinyint(1)", "z": "int(6) unsigned zerofill", "dd": "double(10,2)", "p": "point",
        "vc": "varchar(20)", "e": "enum('a','b')"}


@pytest.mark.parametrize(("index", "declared"), [
    (0, ("id", "bigint", "bigint(20)")),  # type changed by a later ALTER
    (2, ("z", "int", "int(6)")),  # signedness changed
    (5, ("vc", "varchar", "varchar(30)")),  # length changed
    (6, ("e", "enum", "enum('a','b','c')")),  # members changed
    (3, ("other", "double", "double")),  # renamed
])
def test_declared_types_of_another_schema_version_are_not_used(index: int, declared: tuple[str, str, str]) -> None:
    changed = list(DECLARED)
    changed[index] = declared
    assert T.declared_mysql_types(COLUMNS, changed) is None
    assert T.declared_mysql_types(COLUMNS, DECLARED[:-1]) is None  # a column added or dropped
    assert T.declared_mysql_types(COLUMNS, []) is None  # the user cannot see the table


# ---------------------------------------------------------------- partitions (MQMessageUtils.messagePartition)

def _java_hash(text: str) -> int:
    h = 0
    for unit in struct.unpack(f"<{len(text.encode('utf-16-le')) // 2}H", text.encode("utf-16-le")):
        h = (h * 31 + unit) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_partition_mixes_in_the_database_name_by_default_and_key_only_is_an_option() -> None:
    db = "webook_author"
    for pk in (["1"], ["42"], ["k7", "3"], ["é"]):
        h = _java_hash(db)
        for v in pk:
            h ^= _java_hash(v)
        assert partition_for(pk, 7, database=db) == abs(h) % 7
        k = 0
        for v in pk:
            k ^= _java_hash(v)
        assert partition_for(pk, 7, database=db, mode="key") == abs(k) % 7
    images = [("1", "x"), ("42", "y"), ("5", None)]
    assert partitions_of(images, (0,), 7, hash_seed(db)) == [partition_for([i[0]], 7, database=db) for i in images]
    assert partitions_of(images, (0, 1), 7, 0) == [partition_for(list(i), 7, mode="key") for i in images]
    assert partitions_of(images, (), 7, hash_seed(db)) == [abs(_java_hash(db)) % 7] * 3  # no PK: database only
    assert partitions_of(images, (0,), 1, hash_seed(db)) == [0, 0, 0]


# ---------------------------------------------------------------- encoding

def test_dml_and_ddl_encoding_is_canal_field_for_field() -> None:
    rows, olds = update_rows(("id", "v"), [("1", "a"), ("1", "b")])
    raw = encode_dml(database="d", table="t", kind="UPDATE", rows=rows, olds=olds, pk_names=["id"],
                     mysql_type={"id": "int(11)", "v": "char(1)"}, sql_type={"id": 4, "v": 1}, es=1000, ts=2000,
                     id=3, gtid="0-1-9")
    assert list(orjson.loads(raw)) == ["data", "database", "es", "gtid", "id", "isDdl", "mysqlType", "old",
                                       "pkNames", "sql", "sqlType", "table", "ts", "type"]
    msg = parse_flat_message(raw)
    assert (msg.data, msg.old, msg.gtid, msg.id, msg.es) == ([{"id": "1", "v": "b"}], [{"v": "a"}], "0-1-9", 3, 1000)
    assert image_rows(("id",), [("1",), ("2",)]) == [{"id": "1"}, {"id": "2"}]
    ddl = parse_flat_message(encode_ddl(database="d", table="t", kind="ALTER", sql="alter table t", es=1, ts=2,
                                        id=4, gtid="0-1-10"))
    assert (ddl.is_ddl, ddl.data, ddl.mysql_type, ddl.gtid, ddl.id) == (True, None, None, "0-1-10", 4)


# ---------------------------------------------------------------- compensation reads Canal's ENUM/SET text back

def test_enum_set_members_and_labels() -> None:
    assert enum_set_members("enum('a','it''s','c,d')") == ("enum", ("a", "it's", "c,d"))
    assert enum_set_members("set('x','y')") == ("set", ("x", "y"))
    assert enum_set_members("varchar(10)") is None
    assert label_value("enum('r','g')", 4, "2") == "g"
    assert label_value("enum('r','g')", 4, "0") == ""
    assert label_value("set('a','b','c')", -7, "5") == "a,c"
    assert label_value("set('a','b','c')", -7, "0") == ""
    assert label_value("enum('1','2')", 12, "2") == "2"  # labels mode: already the name
    assert label_value("int(11)", 4, "2") == "2"


def test_compensation_before_image_has_enum_and_set_names_not_canal_numbers() -> None:
    from cdc_repair.config import PairConfig, TableRef
    from cdc_repair.model.source_event import SourceEvent
    from cdc_repair.repair.planner import row_event

    pair = PairConfig(name="p", kind="publish", source=TableRef(server="a", table="d.t"),
                      target=TableRef(server="a", table="d.u"), key=["id"])
    event = {"type": "UPDATE", "data": [{"id": "1", "e": "3", "s": "6"}], "old": [{"e": "1", "s": "1"}],
             "mysqlType": {"id": "int(11)", "e": "enum('r','g','b')", "s": "set('a','b','c')"},
             "sqlType": {"id": 4, "e": 4, "s": -7}}
    found = row_event(SourceEvent.all_from_json(event), pair, '["1"]')
    assert found is not None
    assert (found.data, found.old) == ({"id": "1", "e": "b", "s": "b,c"}, {"e": "r", "s": "a"})
    assert found.db_value("e", found.data["e"]) == "b"
