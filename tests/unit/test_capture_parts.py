"""The capture stage's small parts: GTID text, light event framing, the outbox's bounds, sqlType widening,
the retry loop."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from cdc_repair.errors import SchemaDriftError, TransientError
from cdc_repair.sink.flat_message import widened_sql_type
from cdc_repair.source import outbox as outbox_module
from cdc_repair.source import raw_events
from cdc_repair.source.binlog_reader import GtidTracker
from cdc_repair.source.outbox import CaptureCounters, Outbox
from cdc_repair.source.readiness import Readiness
from cdc_repair.source.retry import run_with_retries


def test_mariadb_gtid_set_follows_each_commit_in_one_and_in_several_domains() -> None:
    tracker = GtidTracker("0-1-5", is_mariadb=True)
    assert tracker.current() == "0-1-5"
    tracker.begin("0-1-6")
    assert tracker.current() == "0-1-5", "not committed yet"
    assert tracker.commit() == "0-1-6"
    tracker.begin("2-1-3")
    assert tracker.commit() == "0-1-6,2-1-3"
    tracker.begin("0-1-7")
    assert tracker.commit() == "0-1-7,2-1-3"
    assert tracker.commit() == "0-1-7,2-1-3", "a commit without a GTID event keeps the set"


def test_mysql_gtid_set_merges_intervals() -> None:
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    tracker = GtidTracker(f"{uuid}:1-5", is_mariadb=False)
    tracker.begin(f"{uuid}:6")
    assert tracker.commit() == f"{uuid}:1-6"


def _packet(payload: bytes, *, server_id: int = 7, timestamp: int = 1700000000) -> Any:
    return SimpleNamespace(packet=SimpleNamespace(_data=b"\x00" * 20 + payload, _position=20), server_id=server_id,
                           timestamp=timestamp, event_type=raw_events.MARIADB_GTID_EVENT)


def test_light_mariadb_gtid_reads_domain_server_and_sequence() -> None:
    payload = (123456789).to_bytes(8, "little") + (3).to_bytes(4, "little") + b"\x01"
    ev = raw_events.LightMariadbGtid(_packet(payload), len(payload), {}, None)
    assert ev.gtid == "3-7-123456789"
    assert ev.timestamp == 1700000000


def test_known_table_map_is_skipped_unparsed_only_with_frozen_schema() -> None:
    payload = (42).to_bytes(6, "little") + b"\x00\x00"
    skipped = raw_events.table_map_event(_packet(payload), len(payload), {42: object()}, None, freeze_schema=True)
    assert skipped._processed is False


def test_outbox_is_full_by_records_or_by_bytes_and_drains_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "OUTBOX_BYTES", 1000)
    box = Outbox(CaptureCounters(), Readiness("t"), max_age_s=10.0)
    box.add(("topic", 0, None, b"x" * 600, []))
    assert not box.full and not box.due()
    box.add(("topic", 1, b"k", b"y" * 600, []))
    assert box.full
    sent: list[tuple[Any, ...]] = []
    box.drain(SimpleNamespace(send_burst=sent.extend))
    assert [(r[1], r[3][:1]) for r in sent] == [(0, b"x"), (1, b"y")]
    assert not box.records and not box.full


def test_unsigned_column_widens_its_sql_type_only_above_the_signed_maximum() -> None:
    sql_type = {"id": -5, "n": 4}
    unsigned = ((1, "n", 2**31 - 1, -5),)
    assert widened_sql_type(sql_type, unsigned, [{"id": "1", "n": str(2**31 - 1)}]) is sql_type
    assert widened_sql_type(sql_type, unsigned, [{"id": "1", "n": None}, {"id": "2", "n": str(2**31)}]) == \
        {"id": -5, "n": -5}
    assert sql_type == {"id": -5, "n": 4}, "the table's own map is not changed"


def test_retry_loop_retries_transient_errors_and_stops_on_terminal_ones() -> None:
    stop = threading.Event()
    readiness = Readiness("t")
    calls: list[int] = []

    def session(_stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("broker gone")
        stop.set()

    run_with_retries(session, stop, source="t", readiness=readiness, resume_from=lambda: "binlog.000001:4")
    assert len(calls) == 2
    assert readiness.last_error == "TransientError: broker gone"

    def terminal(_stop: threading.Event) -> None:
        raise SchemaDriftError("no column names")

    with pytest.raises(SchemaDriftError):
        run_with_retries(terminal, threading.Event(), source="t", readiness=readiness, resume_from=lambda: None)
