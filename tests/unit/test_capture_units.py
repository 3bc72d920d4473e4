"""Pure parts of capture: value text, partitions, DDL classification, table filters, start positions."""

from __future__ import annotations

import pytest

from cdc_repair.checkpoint.resume import resolve_start
from cdc_repair.config import CaptureConfig, StartPosition
from cdc_repair.errors import BinlogPurgedError, ConfigError, SchemaDriftError
from cdc_repair.model.position import BinlogPosition, bytes_between
from cdc_repair.model.schema import ColumnSpec, TableSchema
from cdc_repair.sink.partitioning import java_string_hash, key_bytes, partition_for, topic_for
from cdc_repair.source import types as T
from cdc_repair.source.binlog_reader import transactions_from
from cdc_repair.source.ddl import classify_ddl
from cdc_repair.source.decoder import (
    RowDecoder,
    date_text,
    datetime2_text,
    decode_decimal,
    float_text,
    time2_text,
)
from cdc_repair.source.events import Commit, Ddl, Gtid, Heartbeat, Rotate
from cdc_repair.source.filters import TableMatcher

# ---------------------------------------------------------------- values


def _packed_decimal(text: str, precision: int, decimals: int) -> bytes:
    """MySQL decimal2bin for tests (independent of the decoder's reading code)."""
    neg = text.startswith("-")
    ip, _, fp = text.lstrip("-").partition(".")
    fp = fp.ljust(decimals, "0")
    intg = precision - decimals
    dig2 = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    ip = ip.rjust(intg, "0")
    out = b""
    lead = intg % 9
    if lead:
        out += int(ip[:lead]).to_bytes(dig2[lead], "big")
    for k in range(lead, intg, 9):
        out += int(ip[k:k + 9]).to_bytes(4, "big")
    for k in range(0, decimals - decimals % 9, 9):
        out += int(fp[k:k + 9]).to_bytes(4, "big")
    if decimals % 9:
        out += int(fp[decimals - decimals % 9:]).to_bytes(dig2[decimals % 9], "big")
    buf = bytearray(out)
    buf[0] ^= 0x80
    if neg:
        buf = bytearray(b ^ 0xFF for b in buf)
    return bytes(buf)


@pytest.mark.parametrize(("text", "p", "d"), [
    ("1.50", 10, 2), ("-1.50", 10, 2), ("0.00", 10, 2), ("99999", 5, 0), ("-12345678901234.123456", 20, 6),
    ("123456789012345678.9", 19, 1), ("-0.000000001", 12, 9),
])
def test_decimal_is_plain_text_with_the_column_scale(text: str, p: int, d: int) -> None:
    assert decode_decimal(_packed_decimal(text, p, d), p, d) == text


def test_datetime_date_time_text() -> None:
    # 2024-02-29 23:59:58 packed as DATETIME2
    ym = 2024 * 13 + 2
    packed = (1 << 39) | (ym << 22) | (29 << 17) | (23 << 12) | (59 << 6) | 58
    assert datetime2_text(packed, 123456, 6) == "2024-02-29 23:59:58.123456"
    assert datetime2_text(packed, 1230, 3) == "2024-02-29 23:59:58.123"
    assert datetime2_text(packed, 0, 0) == "2024-02-29 23:59:58"
    assert datetime2_text(1 << 39, 0, 0) == "0000-00-00 00:00:00"
    assert date_text((2024 << 9) | (3 << 5) | 1) == "2024-03-01"
    hms = (12 << 12) | (34 << 6) | 56
    assert time2_text((0x800000 + hms).to_bytes(3, "big"), 0) == "12:34:56"


def test_float_text_is_the_shortest_float32_text() -> None:
    assert float_text(1.5) == "1.5"
    assert float_text(5.179999828338623) == "5.18"
    assert float_text(3.0) == "3.0"


def _schema(*cols: ColumnSpec) -> TableSchema:
    return TableSchema(7, "db", "t", cols)


def test_row_decoder_reads_a_full_image_with_nulls() -> None:
    schema = _schema(
        ColumnSpec("id", T.LONGLONG, "bigint(20)", -5, is_pk=True),
        ColumnSpec("n", T.LONG, "int(10) unsigned", 4, unsigned=True),
        ColumnSpec("s", T.VARCHAR, "varchar(10)", 12, charset="utf-8", max_length=40),
        ColumnSpec("b", T.BLOB, "blob", 2004, charset=None, length_size=2),
    )
    dec = RowDecoder(schema)
    title = "é😀".encode()
    image1 = bytes([0b0010]) + (5).to_bytes(8, "little", signed=True) + bytes([len(title)]) + title \
        + (3).to_bytes(2, "little") + b"\x00\xff\x10"
    image2 = bytes([0b1100]) + (-1).to_bytes(8, "little", signed=True) + (4294967295).to_bytes(4, "little")
    body = image1 + image2
    assert dec.images(body, 0, len(body)) == [("5", None, "é😀", "\x00ÿ\x10"), ("-1", "4294967295", None, None)]
    assert dec.pk_names == ["id"]
    with pytest.raises(SchemaDriftError, match="row data"):
        dec.images(body + b"\x00", 0, len(body) + 1)


# ---------------------------------------------------------------- partitions and topics


def test_java_string_hash_matches_java() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("1") == 49
    assert java_string_hash("abc") == 96354
    assert java_string_hash("polygenelubricants") == -2147483648  # Java's famous Integer.MIN_VALUE hash
    assert java_string_hash("😀") == (0xD83D * 31 + 0xDE00) - 0  # two UTF-16 code units


def test_partition_is_stable_and_in_range() -> None:
    assert partition_for(["1"], 3) == 49 % 3
    assert partition_for(["polygenelubricants"], 3) == 2147483648 % 3
    assert partition_for(["1", "abc"], 5) == abs(49 ^ 96354) % 5
    assert partition_for(["x"], 1) == 0
    assert key_bytes(["1", None]) == b"1,"


def test_topic_names() -> None:
    assert topic_for("single", "rows", "p.", "db", "t") == "rows"
    assert topic_for("per_table", "rows", "cdc.", "db", "t") == "cdc.db_t"
    assert topic_for("per_table", "rows", "cdc.", "db", "") == "rows"


# ---------------------------------------------------------------- DDL and filters


@pytest.mark.parametrize(("sql", "expected"), [
    ("ALTER TABLE d.t ADD COLUMN c INT", ("ALTER", "d", "t")),
    ("/* x */ alter table `a`.`b` drop c", ("ALTER", "a", "b")),
    ("CREATE TABLE IF NOT EXISTS t (id int)", ("CREATE", "cur", "t")),
    ("DROP TABLE IF EXISTS d.t", ("ERASE", "d", "t")),
    ("TRUNCATE TABLE t", ("TRUNCATE", "cur", "t")),
    ("RENAME TABLE t TO u", ("RENAME", "cur", "t")),
    ("CREATE UNIQUE INDEX i ON d.t (c)", ("CINDEX", "d", "t")),
    ("DROP INDEX i ON t", ("DINDEX", "cur", "t")),
    ("CREATE DATABASE IF NOT EXISTS x", ("QUERY", "x", "")),
])
def test_ddl_classification(sql: str, expected: tuple[str, str, str]) -> None:
    info = classify_ddl(sql, "cur")
    assert info is not None and (info.type, info.database, info.table) == expected


def test_non_ddl_statements_are_not_published() -> None:
    assert classify_ddl("GRANT SELECT ON *.* TO x", "d") is None
    assert classify_ddl("FLUSH PRIVILEGES", "d") is None


def test_table_matcher() -> None:
    m = TableMatcher(["webook_*.articles", "other.t"], ["webook_test.*"])
    assert m("webook_author", "articles") and m("OTHER", "T")
    assert not m("webook_test", "articles") and not m("webook_author", "drafts")
    assert m.only_schemas() is None
    assert TableMatcher(["a.x", "b.*"], []).only_schemas() == ["a", "b"]
    assert TableMatcher(["*.*"], []).only_schemas() is None
    assert m.schema_included("webook_online") and not m.schema_included("nope")


# ---------------------------------------------------------------- start positions


FILES = {"binlog.000003": 5000, "binlog.000004": 900}
CURRENT = BinlogPosition("binlog.000004", 900)


def _cap(**kw: object) -> CaptureConfig:
    return CaptureConfig(server="author", **kw)  # type: ignore[arg-type]


def test_resume_from_a_checkpoint_still_on_the_server() -> None:
    saved = BinlogPosition("binlog.000003", 1234, "0-1-9")
    assert resolve_start(saved, _cap(), CURRENT, FILES).position == saved


def test_purged_checkpoint_fails_clearly_or_resumes_at_current() -> None:
    saved = BinlogPosition("binlog.000001", 1234)
    with pytest.raises(BinlogPurgedError, match=r"binlog.000001:1234 points into a purged binlog.*on_purged"):
        resolve_start(saved, _cap(), CURRENT, FILES)
    decision = resolve_start(saved, _cap(on_purged="resume_and_full_validate"), CURRENT, FILES)
    assert decision.position == CURRENT and decision.purged_reason and "oldest on the server: binlog.000003" \
        in decision.purged_reason


def test_first_start_options() -> None:
    assert resolve_start(None, _cap(), CURRENT, FILES).position == CURRENT
    assert resolve_start(None, _cap(start="earliest"), CURRENT, FILES).position == BinlogPosition("binlog.000003", 4)
    given = resolve_start(None, _cap(start=StartPosition(file="binlog.000003", pos=77)), CURRENT, FILES)
    assert given.position == BinlogPosition("binlog.000003", 77)
    ts = resolve_start(None, _cap(start=StartPosition(timestamp=1700000000.0)), CURRENT, FILES)
    assert ts.skip_to_timestamp == 1700000000.0 and ts.position.file == "binlog.000003"
    with pytest.raises(ConfigError, match="not on the server"):
        resolve_start(None, _cap(start=StartPosition(file="binlog.000001")), CURRENT, FILES)


def test_bytes_between_positions() -> None:
    a, b = BinlogPosition("binlog.000003", 1000), BinlogPosition("binlog.000004", 100)
    assert bytes_between(a, b, FILES) == 4000 + 100
    assert bytes_between(b, a, FILES) == 0
    assert bytes_between(a, BinlogPosition("binlog.000003", 1500), FILES) == 500


def test_start_at_a_timestamp_skips_whole_transactions_and_keeps_heartbeats() -> None:
    """A transaction is judged by its first event (never cut in half); heartbeats always pass (they carry
    timestamp 0, and the tailer needs them to flush and to notice a stop)."""
    pos = BinlogPosition("binlog.000001", 100)
    old_txn = [Gtid("0-1-1", 99), Commit(pos, 100)]
    straddling = [Gtid("0-1-2", 99), Ddl("db", "ALTER TABLE t ADD c INT", pos, 101)]  # began before 100
    beat = Heartbeat("binlog.000001", 100)
    new_txn = [Gtid("0-1-3", 100), Commit(pos, 100)]
    late_old_clock = [Gtid("0-1-4", 98), Commit(pos, 98)]  # after the first kept transaction: kept
    events = [*old_txn, beat, *straddling, Rotate(pos), *new_txn, beat, *late_old_clock]
    assert list(transactions_from(100.0, iter(events))) == [beat, Rotate(pos), *new_txn, beat, *late_old_clock]
