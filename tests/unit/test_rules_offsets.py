"""The incremental validator's bookkeeping without I/O (validate/stream_keys.py, validate/offsets.py): which
offsets are safe to commit, settle times, newer changes restarting a key, which messages are dead letters, and
the dead-letter send (a fake sink; no broker, no database)."""

from __future__ import annotations

import threading

import pytest

from cdc_repair.config import settings_from_mapping
from cdc_repair.sink.flat_message import FlatMessage, encode_flat_message
from cdc_repair.sink.kafka_consumer import Record
from cdc_repair.validate.stream_kafka import send_dead_letter
from cdc_repair.validate.stream_keys import StreamKeys, settle_due

SETTINGS = settings_from_mapping({
    "servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}},
    "state": {"dsn": "mysql://u:p@127.0.0.1:1/state"},
    "kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
    "pairs": [{"name": "articles", "kind": "publish", "source": {"server": "a", "table": "au.articles"},
               "target": {"server": "a", "table": "on.published"}}],
    "validator": {"settle_delay_s": 1.0, "recheck_delay_s": 0.5, "rechecks": 2},
})
TOPIC = "cdc-repair.rows"


def msg(table: str, ids: list[int], es_ms: int = 1_000_000, type_: str = "INSERT") -> bytes:
    db = "au" if table == "articles" else "on"
    return encode_flat_message(FlatMessage(database=db, table=table, type=type_,
                                           data=[{"id": str(i), "status": "2"} for i in ids],
                                           old=[{"status": "1"} for _ in ids] if type_ == "UPDATE" else None,
                                           pk_names=["id"], es=es_ms, ts=es_ms))


def rec(offset: int, value: bytes, partition: int = 0) -> Record:
    return Record(TOPIC, partition, offset, None, value, 0)


def keys() -> StreamKeys:
    return StreamKeys(SETTINGS)


def release(k: StreamKeys, key: int) -> None:
    assert k.release("articles", f'["{key}"]') is not None


def test_offsets_wait_for_every_key_of_a_message() -> None:
    k = keys()
    assert k.ingest(rec(0, msg("articles", [1, 2])), 0.0).dead_letter is None
    assert k.ingest(rec(1, msg("published", [1])), 0.0).dead_letter is None
    reason = k.ingest(rec(2, b"{broken"), 0.0).dead_letter
    assert reason is not None and "not a Canal FlatMessage" in reason
    tp = (TOPIC, 0)
    assert k.offsets.safe() == {tp: 0}
    release(k, 2)
    assert k.offsets.safe() == {tp: 0}  # message 0 still has key 1
    release(k, 1)  # key 1 came from offsets 0 and 1: both done
    assert k.offsets.safe() == {tp: 3}
    assert k.offsets.to_commit() == {tp: 3}
    k.offsets.committed({tp: 3})
    assert k.offsets.to_commit() == {}  # committed already: nothing to send again


def test_a_dead_letter_is_sent_with_its_reason_and_retried() -> None:
    class FlakyDlq:
        topic = "dlq"

        def __init__(self) -> None:
            self.sent: list[tuple[int, str]] = []
            self.failures = 1

        def send(self, record: Record, reason: str) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("broker away")
            self.sent.append((record.offset, reason))

        def close(self) -> None:
            pass

    dlq = FlakyDlq()
    shown = send_dead_letter(dlq, rec(2, b"{broken"), "not a Canal FlatMessage: x", threading.Event())
    assert dlq.sent == [(2, "not a Canal FlatMessage: x")] and shown["offset"] == 2
    dlq.failures = 1
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(OSError):  # on stop: no retry, the message stays uncommitted
        send_dead_letter(dlq, rec(3, b"{"), "malformed", stopping)


def test_settle_due_time_is_commit_time_plus_delay_and_newer_events_extend_it() -> None:
    k = keys()
    k.ingest(rec(0, msg("articles", [5], es_ms=10_000)), 100.0)
    item = k.get("articles", '["5"]')
    assert item is not None and item.due == 11.0 and item.event_ts == 10.0
    assert item.source_event is not None and item.source_event.data == {"id": "5", "status": "2"}
    assert k.due(10.5, lambda i: False) == {} and k.due(11.0, lambda i: False) == {"articles": [item]}
    k.ingest(rec(1, msg("published", [5], es_ms=12_000)), 100.0)
    assert item.due == 13.0 and item.event_ts == 12.0
    assert item.source_event.table == "articles"  # only source-side events are kept for compensation


def test_a_newer_change_restarts_a_key_awaiting_a_recheck() -> None:
    k = keys()
    assert k.ingest(rec(0, msg("articles", [7], es_ms=1_000, type_="UPDATE")), 100.0).restarted == ()
    item = k.get("articles", '["7"]')
    assert item is not None and item.source_event is not None and item.source_event.old == {"status": "1"}
    assert k.due(5.0, lambda i: True) == {}  # awaiting a re-check: not due for a first check
    got = k.ingest(rec(1, msg("articles", [7], es_ms=2_000)), 100.0)
    assert got.restarted == (("articles", '["7"]'),) and item.due == 3.0  # the validator forgets its re-checks


def test_rows_without_the_key_and_foreign_tables() -> None:
    k = keys()
    bad = encode_flat_message(FlatMessage(database="au", table="articles", type="INSERT",
                                          data=[{"id": None, "status": "2"}], pk_names=["id"], es=1, ts=1))
    assert k.ingest(rec(0, bad), 0.0).dead_letter is not None
    assert k.ingest(rec(1, msg("other", [1])), 0.0).dead_letter is None  # not a pair's table: ignored
    assert not k
    assert k.offsets.safe() == {(TOPIC, 0): 2}


def test_revoked_partitions_forget_their_keys() -> None:
    k = keys()
    k.ingest(rec(0, msg("articles", [1]), partition=0), 0.0)
    k.ingest(rec(0, msg("articles", [2]), partition=1), 0.0)
    offsets, dropped = k.revoke([(TOPIC, 1)])
    assert offsets == {(TOPIC, 1): 0} and [i.pk for i in dropped] == ['["2"]']
    assert [i.pk for i in k] == ['["1"]'] and k.offsets.safe() == {(TOPIC, 0): 0}
    assert len(k) == 1 and k.stats == {"messages": 2, "rows": 2, "own_writes": 0}


def test_settle_is_bounded_by_the_receive_time() -> None:
    assert settle_due(100.0, received=105.0, settle_s=1.0) == 101.0  # commit time in the past: from it
    assert settle_due(99999999999.999, received=105.0, settle_s=1.0) == 106.0  # from the future: from arrival
    assert settle_due(None, received=105.0, settle_s=1.0) == 106.0
