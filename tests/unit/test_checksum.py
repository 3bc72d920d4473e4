"""Pure checksum SQL builders and the re-check scheduler (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_repair.config import PairConfig, RuleConfig, TableRef
from cdc_repair.model.verdict import Verdict
from cdc_repair.validate import checksum as cs
from cdc_repair.validate.confirm import Rechecks

TYPES = {"author_id": "bigint", "title": "varchar", "content": "blob", "status": "tinyint"}


def pair(**kw: Any) -> PairConfig:
    kw.setdefault("kind", "publish")
    return PairConfig(name="p", source=TableRef(server="a", table="s.t"), target=TableRef(server="b", table="s.u"),
                      columns=["id", "author_id", "title", "content", "status", "ctime", "utime"],
                      compare=["author_id", "title", "content", "status"], **kw)


def test_row_hash_is_sha1_over_key_columns_bitmap_lengths_and_prehashed_blobs() -> None:
    h = cs.row_hash(["id", "author_id", "title", "content"], {**TYPES, "id": "bigint"})
    assert h.sql.startswith("CAST(CONV(LEFT(SHA1(CONCAT_WS('#', `id`, `author_id`, `title`, "
                            "CRC32C(`content`), CRC32(`content`), ")
    assert h.sql.endswith("), 16), 16, 10) AS UNSIGNED)")
    assert "(ISNULL(`id`) << 0 | ISNULL(`author_id`) << 1 | ISNULL(`title`) << 2 | ISNULL(`content`) << 3)" in h.sql
    assert "LENGTH(`title`)" in h.sql and "LENGTH(`author_id`)" not in h.sql and "LENGTH(`id`)" not in h.sql
    wide = cs.row_hash([f"c{i}" for i in range(70)], {})
    assert "ISNULL(`c59`) << 59)" in wide.sql and "(ISNULL(`c60`) << 0 | ISNULL(`c61`) << 1" in wide.sql
    without_crc32c = cs.row_hash(["content"], TYPES, crc32c=False)
    assert "MD5(`content`)" in without_crc32c.sql and "CRC32" not in without_crc32c.sql
    marker = cs.HashSpec("IF(`s` = %s, '!', '')", (3,))
    with_marker = cs.row_hash(["title"], TYPES, marker)
    assert with_marker.params == (3,) and "IF(`s` = %s, '!', ''))), 16)" in with_marker.sql
    assert cs.md5_row_hash(["title"], TYPES).sql.startswith("CAST(CONV(LEFT(MD5(CONCAT_WS('#', `title`")


def test_chunk_sums_are_exact_sums_of_the_row_values() -> None:
    """A key range sums the row values directly; only ORDER BY … LIMIT needs a derived table."""
    h = cs.HashSpec("H(%s)", ("p",))
    st = cs.chunk_checksum("s.t", ["id"], h, (1,), (9,))
    assert st.sql == "SELECT COUNT(*), COALESCE(SUM(H(%s)), 0) FROM `s`.`t` WHERE (`id` > %s) AND (`id` <= %s)"
    assert st.params == ("p", 1, 9)
    b = cs.bucket_checksums("s.t", "id", h, None, (9,), 32)
    assert b.sql == ("SELECT `id` DIV 32 AS `_b`, COUNT(*), COALESCE(SUM(H(%s)), 0) FROM `s`.`t` "
                     "WHERE (`id` <= %s) GROUP BY `_b`") and b.params == ("p", 9)
    bl = cs.bucket_checksums_limit("s.t", "id", h, (3,), 100, 32)
    assert bl.sql == ("SELECT `id` DIV 32 AS `_b`, COUNT(*), COALESCE(SUM(`_h`), 0), MAX(`id`) FROM (SELECT `id`, "
                      "H(%s) AS `_h` FROM `s`.`t` WHERE (`id` > %s) ORDER BY `id` LIMIT 100) AS `_c` GROUP BY `_b`")


def test_projection_is_what_the_rules_read() -> None:
    assert cs.projection(pair(), ["id", "author_id", "title", "content", "status", "ctime", "utime"]) == \
        ["status", "author_id", "title", "content"]
    mirror = PairConfig(name="m", kind="mirror", source=TableRef(server="a", table="s.t"),
                        target=TableRef(server="b", table="s.u"), ignore=["utime"])
    assert cs.projection(mirror, ["id", "a", "b", "utime"]) == ["a", "b"]


def test_publish_rules_need_no_marker_but_absent_and_target_values_do() -> None:
    assert cs.rule_marker(pair()) is None  # private rows: status 3 copied is status 3
    rules = [RuleConfig(when={"status": 1}, expect="absent"),
             RuleConfig(when={"status": [3, None]}, expect="if_exists", columns=[], target_values={"flag": "y"}),
             RuleConfig(expect="equal")]
    m = cs.rule_marker(pair(kind="custom", rules=rules))
    assert m is not None
    assert m.sql == ("CASE WHEN (`status` = %s) THEN '!' WHEN (`status` = %s OR `status` IS NULL) THEN "
                     "IF(NOT (`flag` <=> %s), '!', '') WHEN TRUE THEN '' ELSE '' END")
    assert m.params == (1, 3, "y")


def test_range_predicates_single_and_composite() -> None:
    assert cs.range_predicate(["id"], (5,), (9,)) == ("(`id` > %s) AND (`id` <= %s)", (5, 9))
    assert cs.range_predicate(["id"], None, None) == ("TRUE", ())
    sql, params = cs.range_predicate(["a", "b"], (1, 2), None)
    assert sql == "((`a` > %s) OR (`a` = %s AND `b` > %s))" and params == (1, 1, 2)
    sql, params = cs.range_predicate(["a", "b"], None, (3, 4), "x LIKE 'a%'")
    assert sql == "((`a` < %s) OR (`a` = %s AND `b` <= %s)) AND (x LIKE 'a%%')" and params == (3, 3, 4)


def test_statements_escape_where_percent_only_when_parameters_exist() -> None:
    h = cs.HashSpec("1")
    with_params = cs.chunk_checksum("s.t", ["id"], h, (1,), None, "x LIKE 'a%'")
    assert "LIKE 'a%%'" in with_params.sql and with_params.params == (1,)
    without = cs.chunk_checksum("s.t", ["id"], h, None, None, "x LIKE 'a%'")
    assert "LIKE 'a%'" in without.sql and "%%" not in without.sql


def test_chunk_checksum_limit_reads_count_sum_and_upper_key() -> None:
    st = cs.chunk_checksum_limit("s.t", ["id"], cs.HashSpec("H(%s)", ("p",)), (10,), 500)
    assert st.sql == ("SELECT COUNT(*), COALESCE(SUM(`_h`), 0), MAX(`id`) FROM (SELECT `id`, H(%s) AS `_h` "
                      "FROM `s`.`t` WHERE (`id` > %s) ORDER BY `id` LIMIT 500) AS `_c`")
    assert st.params == ("p", 10)


def test_buckets_count_from_an_offset_below_every_key() -> None:
    st = cs.bucket_checksums("s.t", "id", cs.HashSpec("1"), None, None, 32, offset=-5)
    assert st.sql.startswith("SELECT (`id` - -5) DIV 32 AS `_b`, COUNT(*)")
    assert cs.bucket_checksums("s.t", "id", cs.HashSpec("1"), None, None, 32).sql.startswith(
        "SELECT `id` DIV 32 AS `_b`")


def test_identifiers_are_quoted_and_checked() -> None:
    with pytest.raises(ValueError):
        cs.row_hash(["bad name"], {})
    assert cs.row_hashes("s.t", ["id"], cs.HashSpec("1"), None, (3,)).sql == \
        "SELECT `id`, 1 FROM `s`.`t` WHERE (`id` <= %s) ORDER BY `id`"


def v(key: int, kind: str) -> Verdict:
    return Verdict("p", (key,), kind)


def test_rechecks_confirm_only_persisting_mismatches() -> None:
    r = Rechecks(rechecks=2, delay_s=0.5)
    assert r.add([v(1, "different"), v(2, "missing_in_target"), v(3, "ok")], now=0.0) == []
    assert len(r) == 2 and r.due(0.4) == {} and r.due(0.5) == {"p": [(1,), (2,)]}
    assert r.feed([v(1, "different"), v(2, "ok")], now=0.5) == []  # key 2 healed
    assert len(r) == 1 and r.next_due() == 1.0
    confirmed = r.feed([v(1, "different")], now=1.0)
    assert [c.key for c in confirmed] == [(1,)] and len(r) == 0


def test_rechecks_forget_on_newer_change_and_zero_rechecks() -> None:
    r = Rechecks(rechecks=1, delay_s=1)
    r.add([v(1, "different")], now=0)
    r.forget("p", '["1"]')
    assert r.feed([v(1, "different")], now=1) == [] and len(r) == 0
    assert [c.key for c in Rechecks(0, 1).add([v(7, "extra_in_target"), v(8, "ok")], now=0)] == [(7,)]
