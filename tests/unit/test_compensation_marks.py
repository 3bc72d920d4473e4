"""Own-write marks and binlog coordinates (pure): what the tailer tags and what the validator keeps."""

from __future__ import annotations

from cdc_repair.model.history import coordinates_from_headers, is_marker, is_own_write
from cdc_repair.model.position import BinlogPosition
from cdc_repair.model.source_event import Coordinates, SourceEvent
from cdc_repair.source.origin import TxnOrigin

OURS = ("branch_id", "xid", "context", "table_name", "pk", "sql_type", "strategy", "columns", "before_image",
        "after_image", "log_status", "log_created", "log_modified")
SEATA = ("branch_id", "xid", "context", "rollback_info", "log_status", "log_created", "log_modified")


def test_only_our_undo_log_marks_a_transaction_not_an_applications_seata_undo_log() -> None:
    assert is_marker("undo_log", OURS)
    assert not is_marker("undo_log", SEATA)  # Seata AT writes it with the application's rows: not ours
    assert not is_marker("articles", OURS)


def test_a_marked_transaction_tags_its_messages_and_flushes_at_its_edges() -> None:
    origin = TxnOrigin(lambda schema, table: table == "articles")
    start = BinlogPosition("binlog.000003", 1200)
    sent: list[list[tuple[str, bytes]]] = []

    def flush() -> None:  # what the tailer's _flush_groups does: send with the headers of now
        sent.append(origin.headers())
        origin.flushed()

    assert not origin.rows("articles", ("id", "title"), flush)  # an author's row: grouped
    origin.grouped(start)
    assert origin.rows("undo_log", OURS, flush)  # the repair's marker: the author's rows go first, untagged
    assert sent == [[("cdc-repair-binlog", b"binlog.000003:1200")]]
    assert origin.rows("undo_log", OURS, flush) and len(sent) == 1
    assert not origin.rows("articles", ("id", "title"), flush)
    origin.grouped(BinlogPosition("binlog.000003", 1500))
    assert is_own_write(origin.headers())
    assert origin.headers()[1] == ("cdc-repair-binlog", b"binlog.000003:1500")
    origin.flushed()
    origin.end_txn()
    assert not is_own_write(origin.headers()) and origin.headers() == []
    assert origin.table_filter()("db", "undo_log") and not origin.table_filter()("db", "other")


def test_coordinates_and_the_start_of_a_run_are_kept() -> None:
    coords = coordinates_from_headers([("x", b"1"), ("cdc-repair-binlog", b"mysql-bin.000012:4096")], "0-1-9")
    assert coords is not None and coords.to_json() == {"file": "mysql-bin.000012", "pos": 4096, "gtid": "0-1-9"}
    assert coordinates_from_headers([("cdc-repair-binlog", b"garbage")]) is None
    assert coords.position == BinlogPosition("mysql-bin.000012", 4096)
    assert Coordinates.from_json({"file": "f", "pos": "12"}) is None and Coordinates.from_json(None) is None
    update = SourceEvent("UPDATE", "db", "articles", 1, {"id": "1"})
    first = update.at(coords).following(None)
    later = update.at(Coordinates("mysql-bin.000013", 4)).following(first)
    assert later.first_binlog == coords and later.binlog is not None and later.binlog.file == "mysql-bin.000013"
    unmarked = update.at(None).following(later)  # e.g. a record without header
    assert unmarked.first_binlog == coords and unmarked.since == coords.position
    stored = later.to_json()
    assert stored["first_binlog"] == coords.to_json() and stored["binlog"]["file"] == "mysql-bin.000013"
    assert SourceEvent.from_json(stored) == later  # the ledger's JSON reads back as the same event
