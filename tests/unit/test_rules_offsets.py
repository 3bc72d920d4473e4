"""The incremental validator's bookkeeping without I/O: which offsets are safe to commit, settle times,
newer changes restarting a key, dead letters (fake dead-letter sink; no broker, no database)."""

from __future__ import annotations

from typing import Any

from cdc_repair.config import settings_from_mapping
from cdc_repair.model.verdict import Verdict
from cdc_repair.sink.flat_message import FlatMessage, encode_flat_message
from cdc_repair.sink.kafka_consumer import Record
from cdc_repair.validate.consumer import IncrementalValidator

SETTINGS = settings_from_mapping({
    "servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}},
    "state": {"dsn": "mysql://u:p@127.0.0.1:1/state"},
    "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
    "pairs": [{"name": "articles", "kind": "publish", "source": {"server": "a", "table": "au.articles"},
               "target": {"server": "a", "table": "on.published"}}],
    "validator": {"settle_delay_s": 1.0, "recheck_delay_s": 0.5, "rechecks": 2},
})
TOPIC = "cdc-repair.rows"


class FakeDlq:
    topic = "dlq"

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, record: Record, reason: str) -> None:
        self.sent.append((record.offset, reason))


def msg(table: str, ids: list[int], es_ms: int = 1_000_000, type_: str = "INSERT") -> bytes:
    db = "au" if table == "articles" else "on"
    return encode_flat_message(FlatMessage(database=db, table=table, type=type_,
                                           data=[{"id": str(i), "status": "2"} for i in ids],
                                           old=[{"status": "1"} for _ in ids] if type_ == "UPDATE" else None,
                                           pk_names=["id"], es=es_ms, ts=es_ms))


def rec(offset: int, value: bytes, partition: int = 0) -> Record:
    return Record(TOPIC, partition, offset, None, value, 0)


def validator() -> tuple[IncrementalValidator, FakeDlq]:
    v = IncrementalValidator(SETTINGS)
    dlq = FakeDlq()
    v._dlq = dlq  # type: ignore[assignment]
    return v, dlq


def release(v: IncrementalValidator, key: int) -> None:
    v._release(v.items[("articles", f'["{key}"]')])


def test_offsets_wait_for_every_key_of_a_message() -> None:
    v, dlq = validator()
    v._ingest(rec(0, msg("articles", [1, 2])))
    v._ingest(rec(1, msg("published", [1])))
    v._ingest(rec(2, b"{broken"))
    assert len(dlq.sent) == 1 and dlq.sent[0][0] == 2 and "not a Canal FlatMessage" in dlq.sent[0][1]
    tp = (TOPIC, 0)
    assert v.safe_offsets() == {tp: 0}
    release(v, 2)
    assert v.safe_offsets() == {tp: 0}  # message 0 still has key 1
    release(v, 1)  # key 1 came from offsets 0 and 1: both done
    assert v.safe_offsets() == {tp: 3}


def test_settle_due_time_is_commit_time_plus_delay_and_newer_events_extend_it() -> None:
    v, _ = validator()
    v._ingest(rec(0, msg("articles", [5], es_ms=10_000)))
    item = v.items[("articles", '["5"]')]
    assert item.due == 11.0 and item.event_ts == 10.0
    assert item.source_event is not None and item.source_event.data == {"id": "5", "status": "2"}
    v._ingest(rec(1, msg("published", [5], es_ms=12_000)))
    assert item.due == 13.0 and item.event_ts == 12.0
    assert item.source_event.table == "articles"  # only source-side events are kept for compensation


def test_a_newer_change_restarts_a_key_awaiting_a_recheck() -> None:
    v, _ = validator()
    v._ingest(rec(0, msg("articles", [7], es_ms=1_000, type_="UPDATE")))
    assert v.items[("articles", '["7"]')].source_event.old == {"status": "1"}  # type: ignore[union-attr]
    v.rechecks.add([Verdict("articles", ("7",), "missing_in_target")], now=0.0)
    assert v._rechecking(v.items[("articles", '["7"]')])
    v._ingest(rec(1, msg("articles", [7], es_ms=2_000)))
    assert not v._rechecking(v.items[("articles", '["7"]')]) and v.items[("articles", '["7"]')].due == 3.0


def test_rows_without_the_key_and_foreign_tables() -> None:
    v, dlq = validator()
    bad = encode_flat_message(FlatMessage(database="au", table="articles", type="INSERT",
                                          data=[{"id": None, "status": "2"}], pk_names=["id"], es=1, ts=1))
    v._ingest(rec(0, bad))
    v._ingest(rec(1, msg("other", [1])))  # not a pair's table: ignored, nothing pending
    assert [o for o, _ in dlq.sent] == [0] and not v.items
    assert v.safe_offsets() == {(TOPIC, 0): 2}


def test_revoked_partitions_forget_their_keys() -> None:
    v, _ = validator()
    v._ingest(rec(0, msg("articles", [1]), partition=0))
    v._ingest(rec(0, msg("articles", [2]), partition=1))
    v._on_revoked([(TOPIC, 1)])
    assert list(v.items) == [("articles", '["1"]')] and v.safe_offsets() == {(TOPIC, 0): 0}
    health: dict[str, Any] = v.health()
    assert health["pending_keys"] == 1 and health["dead_letters"] == 0


def test_settle_is_bounded_by_the_receive_time() -> None:
    from cdc_repair.validate.consumer import settle_due

    assert settle_due(100.0, received=105.0, settle_s=1.0) == 101.0  # commit time in the past: from it
    assert settle_due(99999999999.999, received=105.0, settle_s=1.0) == 106.0  # from the future: from arrival
    assert settle_due(None, received=105.0, settle_s=1.0) == 106.0
