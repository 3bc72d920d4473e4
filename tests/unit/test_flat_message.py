"""FlatMessage codec: Canal field order, strings-or-null values, strict parsing with one-line reasons."""

from __future__ import annotations

import re

import orjson
import pytest

from cdc_repair.errors import MalformedMessageError
from cdc_repair.sink.flat_message import FIELDS, FlatMessage, encode_flat_message, parse_flat_message

UPDATE = FlatMessage(
    database="webook_author", table="articles", type="UPDATE",
    data=[{"id": "8", "title": "new", "content": None}], old=[{"title": "old"}], pk_names=["id"],
    mysql_type={"id": "bigint(20)", "title": "varchar(4096)", "content": "blob"},
    sql_type={"id": -5, "title": 12, "content": 2004}, es=1693995726000, ts=1693995726413, id=5,
    gtid="0-11-42",
)

CANAL_SAMPLE = (b'{"data":[{"id":"8","name":"Lane"}],"database":"example","es":1693995726000,"gtid":"","id":5,'
                b'"isDdl":false,"mysqlType":{"id":"int unsigned","name":"varchar(255)"},"old":[{"name":"LL"}],'
                b'"pkNames":["id"],"sql":"","sqlType":{"id":4,"name":12},"table":"user","ts":1693995726413,'
                b'"type":"UPDATE"}')


def test_encode_writes_canal_fields_in_alphabetical_order_with_nulls() -> None:
    raw = encode_flat_message(FlatMessage(database="d", table="t", type="INSERT", data=[{"id": "1", "x": None}]))
    doc = orjson.loads(raw)
    assert list(doc) == list(FIELDS)
    assert doc["old"] is None and doc["data"] == [{"id": "1", "x": None}] and doc["isDdl"] is False


def test_round_trip_keeps_every_field() -> None:
    assert parse_flat_message(encode_flat_message(UPDATE)) == UPDATE


def test_parses_a_real_canal_message() -> None:
    msg = parse_flat_message(CANAL_SAMPLE)
    assert (msg.database, msg.table, msg.type, msg.pk_values()) == ("example", "user", "UPDATE", [("8",)])
    assert msg.before_images() == [{"id": "8", "name": "LL"}]


def test_pre_gtid_canal_message_reads_gtid_as_empty() -> None:
    doc = orjson.loads(CANAL_SAMPLE)
    del doc["gtid"]
    assert parse_flat_message(orjson.dumps(doc)).gtid == ""


def test_ddl_message() -> None:
    ddl = FlatMessage(database="db", table="t", type="ALTER", data=None, is_ddl=True, sql="ALTER TABLE t ADD c INT")
    assert parse_flat_message(encode_flat_message(ddl)) == ddl


def test_multi_row_delete_keys_and_before_images() -> None:
    msg = FlatMessage(database="d", table="t", type="DELETE", data=[{"a": "1", "b": "x"}, {"a": "2", "b": None}],
                      pk_names=["a", "b"])
    back = parse_flat_message(encode_flat_message(msg))
    assert back.pk_values() == [("1", "x"), ("2", None)]
    assert back.before_images() == msg.data


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d: d.pop("data"), "missing field(s) data"),
    (lambda d: d.update(isDdl="false"), "'isDdl' must be true or false"),
    (lambda d: d.update(data=[{"id": 8}]), "'data[0].id' must be a string or null"),
    (lambda d: d.update(old=None), "UPDATE 'old' must be a list aligned with 'data'"),
    (lambda d: d.update(data=[]), "UPDATE message without 'data' rows"),
    (lambda d: d.update(es="1"), "'es' must be an integer"),
    (lambda d: d.update(sqlType={"id": "4"}), "'sqlType.id' must be an integer"),
    (lambda d: d.update(pkNames="id"), "'pkNames' must be a list"),
    (lambda d: d.update(data=[{"name": "x"}], old=[{}]), "lacks primary-key column(s) id"),
    (lambda d: d.update(isDdl=True), "isDdl is true but type is UPDATE"),
])
def test_malformed_messages_are_rejected_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    doc = orjson.loads(CANAL_SAMPLE)
    mutate(doc)
    with pytest.raises(MalformedMessageError, match=re.escape(reason)):
        parse_flat_message(orjson.dumps(doc))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b"null", b'"x"'])
def test_non_objects_are_rejected(raw: bytes) -> None:
    with pytest.raises(MalformedMessageError, match="not a Canal FlatMessage"):
        parse_flat_message(raw)
