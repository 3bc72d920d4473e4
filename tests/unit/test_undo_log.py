"""Undo records: typed JSON images round-trip exactly; the DDL is Seata-like."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson

from cdc_repair.repair.undo_log import (
    LogStatus,
    UndoRecord,
    ddl,
    decode_image,
    encode_image,
    record_from_row,
)

ROW = {"id": 7, "price": Decimal("12.340"), "ratio": 0.1, "title": "ünï", "body": b"\x00\xff raw",
       "text_blob": b"plain text", "at": dt.datetime(2024, 5, 6, 7, 8, 9, 123456), "day": dt.date(2024, 5, 6),
       "dur": dt.timedelta(hours=1, seconds=2), "none": None}


def test_images_round_trip_every_value_type_exactly() -> None:
    blob = encode_image("db.t", ROW, ["id"])
    back = decode_image(blob)
    assert back == ROW
    assert {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in ROW.items()}
    fields = orjson.loads(blob)["rows"][0]["fields"]
    types = {f["name"]: f["type"] for f in fields}
    assert types["body"] == "bytes" and types["text_blob"] == "bytes_utf8" and types["price"] == "decimal"
    assert {f["name"]: f["keyType"] for f in fields}["id"] == "PRIMARY_KEY"


def test_absent_row_is_an_empty_image() -> None:
    assert orjson.loads(encode_image("db.t", None, ["id"])) == {"tableName": "db.t", "rows": []}
    assert decode_image(encode_image("db.t", None, ["id"])) is None


def test_record_survives_a_database_round_trip() -> None:
    rec = UndoRecord(xid="rp-1", branch_id=1, table="db.t", pk='["7"]', sql_type="UPDATE", strategy="forward",
                     columns=("id", "title"), key_columns=("id",), before=ROW, after={**ROW, "title": "new"})
    names = ("branch_id", "xid", "context", "table_name", "pk", "sql_type", "strategy", "columns",
             "before_image", "after_image", "log_status")
    row = dict(zip(names, rec.to_params(), strict=True))
    back = record_from_row(row)
    assert back.before == ROW and back.after == {**ROW, "title": "new"}
    assert (back.columns, back.key_columns, back.status) == (("id", "title"), ("id",), LogStatus.NORMAL)
    assert row["context"] == "serializer=json&compressorType=NONE"


def test_ddl_is_created_on_demand_and_unique_on_xid_branch() -> None:
    text = ddl("webook_online")
    assert text.startswith("CREATE TABLE IF NOT EXISTS `webook_online`.`undo_log`")
    assert "UNIQUE KEY `ux_undo_log` (`xid`, `branch_id`)" in text and "`ix_log_created`" in text


def test_images_carry_the_sql_column_type_when_known() -> None:
    blob = encode_image("db.t", {"id": 1, "c": b"x"}, ["id"], {"id": "bigint(20)", "c": "blob"})
    fields = orjson.loads(blob)["rows"][0]["fields"]
    assert [(f["name"], f["sqlType"], f["type"]) for f in fields] == [("id", "bigint(20)", "int"),
                                                                        ("c", "blob", "bytes_utf8")]
    assert decode_image(blob) == {"id": 1, "c": b"x"}


def test_same_image_agrees_with_the_encoded_images() -> None:
    """The repair checks each undo record's after-image against the re-read row without encoding either: the
    check must say "same" exactly when the two JSON images would be the same bytes."""
    from cdc_repair.repair.undo_log import same_image

    variants = [
        {**ROW, "price": Decimal("12.34")},  # equal number, other scale: another image
        {**ROW, "ratio": 0.1000001},
        {**ROW, "id": 7.0},  # equal value, other type
        {**ROW, "id": True},
        {**ROW, "body": b"\x00\xff raw "},
        {**ROW, "at": dt.datetime(2024, 5, 6, 7, 8, 9, 123000)},
        {**ROW, "none": ""},
        {k: ROW[k] for k in reversed(ROW)},  # same values, other column order
        {k: v for k, v in ROW.items() if k != "none"},
        dict(ROW),
        None,
    ]
    for a in [ROW, None, {"f": 0.0}]:
        for b in [*variants, {"f": -0.0}, {"f": 0.0}]:
            assert same_image(a, b) == (encode_image("db.t", a, ["id"]) == encode_image("db.t", b, ["id"])), (a, b)
