"""The publish contract and mirror rules as pure functions (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cdc_repair.config import NormalizeConfig, PairConfig, RuleConfig, TableRef
from cdc_repair.model.keys import parse_pk, pk_string, rows_by_requested_key
from cdc_repair.model.rules import evaluate, needed_columns, values_equal
from cdc_repair.model.verdict import DIFFERENT, EXTRA, MISSING, NOT_APPLICABLE, OK


def publish_pair(**kw: Any) -> PairConfig:
    return PairConfig(name="articles", kind="publish",
                      source=TableRef(server="a", table="webook_author.articles"),
                      target=TableRef(server="b", table="webook_online.published_articles"),
                      columns=["id", "author_id", "title", "content", "status", "ctime", "utime"],
                      compare=["author_id", "title", "content", "status"], ignore=["ctime", "utime"], **kw)


def mirror_pair(**kw: Any) -> PairConfig:
    kw.setdefault("kind", "mirror")
    return PairConfig(name="m", source=TableRef(server="a", table="s.t"),
                      target=TableRef(server="b", table="s.u"), **kw)


def art(id: int = 1, status: int = 2, **kw: Any) -> dict[str, Any]:
    row = {"id": id, "author_id": 7, "title": "t", "content": b"body", "status": status, "ctime": 1, "utime": 2}
    row.update(kw)
    return row


P = publish_pair()


def test_published_equal_rows_are_ok_even_when_times_differ() -> None:
    v = evaluate(P, art(), art(ctime=99, utime=100))
    assert v.kind == OK and v.columns == () and v.key == (1,)


def test_published_missing_online_row() -> None:
    v = evaluate(P, art(), None)
    assert v.kind == MISSING and v.is_mismatch and v.rule == 0


def test_published_different_columns_listed_in_order() -> None:
    v = evaluate(P, art(), art(title="T", content=b"other"))
    assert v.kind == DIFFERENT and v.columns == ("title", "content")


def test_private_needs_only_status_when_online_row_exists() -> None:
    assert evaluate(P, art(status=3), None).kind == OK
    assert evaluate(P, art(status=3, title="new"), art(status=3, title="old")).kind == OK
    v = evaluate(P, art(status=3), art(status=2))
    assert v.kind == DIFFERENT and v.columns == ("status",)


def test_draft_has_no_expectation() -> None:
    assert evaluate(P, art(status=1), art(title="old")).kind == NOT_APPLICABLE
    assert evaluate(P, art(status=1), None).kind == NOT_APPLICABLE


def test_orphan_online_row_is_extra_unless_ignored() -> None:
    assert evaluate(P, None, art()).kind == EXTRA
    assert evaluate(publish_pair(orphans="ignore"), None, art()).kind == NOT_APPLICABLE
    assert evaluate(P, None, None, key=(5,)).kind == OK


def test_unknown_status_matches_no_rule() -> None:
    assert evaluate(P, art(status=9), art()).kind == NOT_APPLICABLE


def test_status_matches_by_string_form() -> None:
    assert evaluate(P, art(status="2"), None).kind == MISSING
    assert evaluate(P, art(status=Decimal("2")), None).kind == MISSING


def test_null_is_not_empty_string() -> None:
    v = evaluate(P, art(title=None), art(title=""))
    assert v.kind == DIFFERENT and v.columns == ("title",)
    assert evaluate(P, art(title=None), art(title=None)).kind == OK


def test_trailing_space_differs_unless_trimmed() -> None:
    assert evaluate(P, art(title="a "), art(title="a")).kind == DIFFERENT
    trimmed = publish_pair(normalize=NormalizeConfig(trim=True))
    assert evaluate(trimmed, art(title="a "), art(title="a")).kind == OK


def test_emoji_and_bytes_vs_text() -> None:
    assert evaluate(P, art(title="a😀"), art(title="a😀")).kind == OK
    assert evaluate(P, art(title="a😀"), art(title="a😁")).kind == DIFFERENT
    assert values_equal(b"caf\xc3\xa9", "café")
    assert not values_equal(b"\xff", "\ufffd")


def test_large_blob_one_byte_differs() -> None:
    big = b"x" * (4 * 1024 * 1024)
    assert evaluate(P, art(content=big), art(content=big)).kind == OK
    assert evaluate(P, art(content=big), art(content=big[:-1] + b"y")).columns == ("content",)


def test_mirror_compares_every_column_but_key() -> None:
    m = mirror_pair()
    assert evaluate(m, {"id": 1, "a": 1, "b": None}, {"id": 1, "a": 1, "b": None}).kind == OK
    v = evaluate(m, {"id": 1, "a": 1, "b": "x"}, {"id": 1, "a": 1, "b": "y"})
    assert v.kind == DIFFERENT and v.columns == ("b",)
    assert evaluate(m, {"id": 1, "a": 1}, None).kind == MISSING
    assert evaluate(m, None, {"id": 1, "a": 1}).kind == EXTRA
    assert needed_columns(m) is None


def test_mirror_ignore_columns() -> None:
    m = mirror_pair(ignore=["u"])
    assert evaluate(m, {"id": 1, "a": 1, "u": 5}, {"id": 1, "a": 1, "u": 6}).kind == OK


def test_custom_rules_absent_exists_and_target_values() -> None:
    rules = [RuleConfig(when={"status": [0, 4]}, expect="absent"),
             RuleConfig(when={"status": 5}, expect="exists", target_values={"flag": "y"}),
             RuleConfig(expect="equal", columns=["a"])]
    p = mirror_pair(kind="custom", rules=rules)
    assert evaluate(p, {"id": 1, "status": 4}, {"id": 1}).kind == EXTRA
    assert evaluate(p, {"id": 1, "status": 0}, None).kind == OK
    assert evaluate(p, {"id": 1, "status": 5}, None).kind == MISSING
    assert evaluate(p, {"id": 1, "status": 5}, {"id": 1, "flag": "n"}).columns == ("flag",)
    assert evaluate(p, {"id": 1, "status": 5}, {"id": 1, "flag": "y"}).kind == OK
    assert evaluate(p, {"id": 1, "status": 7, "a": 1, "b": 1}, {"id": 1, "a": 1, "b": 2}).kind == OK
    assert needed_columns(p) == ["id", "status", "flag", "a"]


def test_numbers_compare_by_value() -> None:
    assert values_equal(2, Decimal("2.0"))
    assert values_equal(1.5, Decimal("1.5"))
    assert not values_equal(1, 2)
    assert values_equal(0.1 + 0.2, 0.3, NormalizeConfig(float_digits=15))
    assert not values_equal(0.1 + 0.2, 0.3)


def test_timestamp_precision_and_zone() -> None:
    a = dt.datetime(2024, 1, 1, 12, 0, 0, 123456)
    b = dt.datetime(2024, 1, 1, 12, 0, 0, 123000)
    assert not values_equal(a, b)
    assert values_equal(a, b, NormalizeConfig(timestamp_precision=3))
    utc = dt.datetime(2024, 1, 1, 4, 0, 0, tzinfo=dt.UTC)
    assert values_equal(dt.datetime(2024, 1, 1, 12, 0), utc, NormalizeConfig(time_zone="Asia/Shanghai"))


@pytest.mark.parametrize("key", [(5,), ("5",), (b"5",), (5.0,)])
def test_pk_string_is_canonical(key: tuple[Any, ...]) -> None:
    assert pk_string(key) == '["5"]'
    assert parse_pk(pk_string(key)) == ("5",)


def test_pk_string_composite_and_unicode() -> None:
    assert parse_pk(pk_string((1, "é"))) == ("1", "é")


def test_rows_by_requested_key_pairs_collation_equal_keys_through_the_server() -> None:
    asked: list[list[tuple[str, ...]]] = []

    def fetch(keys: Any) -> list[dict[str, Any]]:  # the server under a case-insensitive collation
        asked.append([tuple(k) for k in keys])
        return [{"code": "Case1", "v": 1}] if [k[0].lower() for k in keys] == ["case1"] else []

    rows = [{"code": "Case1", "v": 1}, {"code": "b", "v": 2}]
    wanted = {pk_string(k): k for k in [("case1",), ("b",), ("draft",)]}
    got = rows_by_requested_key(["code"], wanted, rows, fetch)
    assert got == {'["case1"]': {"code": "Case1", "v": 1}, '["b"]': {"code": "b", "v": 2}}
    assert asked == [[("case1",)]]  # only the look-alike is re-read; the plainly absent 'draft' is not


def test_rows_by_requested_key_costs_no_query_for_int_keys_or_absent_rows() -> None:
    def fetch(keys: Any) -> list[dict[str, Any]]:
        raise AssertionError("no re-read expected")

    wanted = {'["5"]': ("5",), '["6"]': ("6",), '["-7"]': (-7,)}
    assert rows_by_requested_key(["id"], wanted, [{"id": 5}], fetch) == {'["5"]': {"id": 5}}


def test_a_key_spelled_otherwise_is_different_on_the_key_whatever_trim_says() -> None:
    """A collation may pair 'KEY10' with 'key10' or 'k ' with 'k'; the mirror's key must be byte-exact."""
    from cdc_repair.model.keys import key_bytes_equal
    from cdc_repair.model.rules import source_spelled

    m = mirror_pair(key=["code"], normalize=NormalizeConfig(trim=True))
    src = {"code": "key10", "name": "n"}
    v = evaluate(m, src, {"code": "KEY10", "name": "n"}, ("KEY10",))
    assert (v.kind, v.columns, v.key, v.source_key) == (DIFFERENT, ("code",), ("KEY10",), ("key10",))
    assert source_spelled(m, v).key == ("key10",) and source_spelled(m, v).pk == '["key10"]'
    assert evaluate(m, src, {"code": "key10 ", "name": "n "}, ("key10",)).columns == ("code",)  # trim: only values
    same = evaluate(m, src, dict(src), ("key10",))
    assert same.kind == OK and same.source_key is None and source_spelled(m, same) is same
    assert evaluate(mirror_pair(), {"id": 5, "a": 1}, {"id": 5, "a": 1}, ("5",)).source_key is None  # Kafka text
    assert key_bytes_equal(5, "5") and key_bytes_equal(b"k", "k") and not key_bytes_equal("k", "k ")
    assert not key_bytes_equal("KEY10", "key10") and key_bytes_equal(Decimal("5.00"), Decimal("5.0"))
