"""The stream validator's keys between a message and its verdict (pure: time is passed in, no I/O).

Why a value of its own: this is where the consumer's promises live — a key is checked only after it settled
(its commit time plus `settle_delay_s`), a newer change of a key starts it over, the latest source-side event of
a key travels to the ledger for compensation, and a message's offset is released only when all its keys are
durable. Kept apart from Kafka and the databases, each of those rules is one assertion in a unit test.

    keys = StreamKeys(settings)
    got = keys.ingest(record, now)      # -> Ingested(dead_letter reason | None, restarted (pair, pk) keys)
    keys.due(now, busy) / keys.next_due(busy)   # settled keys by pair (not those `busy` re-checking)
    keys.events(pair, verdicts)         # (source events, commit times) of keys, for the ledger
    keys.release(pair, pk)              # durable: the key's messages may be committed
    keys.revoke(tps)                    # partitions lost: forget their keys, return their safe offsets
    keys.offsets                        # the OffsetBook (validate/offsets.py)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cdc_repair.config import PairConfig, Settings
from cdc_repair.errors import MalformedMessageError
from cdc_repair.model.history import coordinates_from_headers, is_own_write
from cdc_repair.model.keys import pk_string
from cdc_repair.model.source_event import SourceEvent
from cdc_repair.model.verdict import Verdict
from cdc_repair.sink.flat_message import FlatMessage, parse_flat_message
from cdc_repair.sink.kafka_consumer import TP, Record
from cdc_repair.validate.offsets import OffsetBook

Ident = tuple[str, str]  # (pair name, pk string)
PairRow = tuple[PairConfig, tuple[Any, ...], SourceEvent | None]  # (pair, key, source event or None)


def settle_due(es: float | None, received: float, settle_s: float) -> float:
    """When a key may be checked: `settle_s` after its commit time, but never later than `settle_s` after the
    message arrived. A commit time from the future (a source clock running ahead, or a bad `es`) would otherwise
    hold the key, and with it its partition's committed offset, until that time."""
    start = received if es is None else min(es, received)
    return start + settle_s


def source_event(msg: FlatMessage, i: int, row: dict[str, Any]) -> SourceEvent:
    """Row `i` of a source-side message as the ledger keeps it: the compensation needs the before-image."""
    old = msg.old[i] if msg.old and i < len(msg.old) else None
    return SourceEvent(msg.type, msg.database, msg.table, msg.es, row, old, msg.mysql_type, msg.sql_type)


def pair_rows(msg: FlatMessage, by_table: dict[str, list[PairConfig]]) -> list[PairRow]:
    """(pair, key, source event or None) for every row of the message that belongs to a pair; a row without a
    value for a key column makes the whole message malformed."""
    if msg.is_ddl or not msg.data:
        return []
    table = f"{msg.database}.{msg.table}"
    out: list[PairRow] = []
    for i, row in enumerate(msg.data):
        for pair in by_table.get(table, []):
            missing = [k for k in pair.key if k not in row or row[k] is None]
            if missing:
                raise MalformedMessageError(f"row {i} of {table} has no value for key column(s) "
                                            f"{', '.join(missing)} of pair '{pair.name}'")
            event = source_event(msg, i, row) if table == pair.source.table else None
            out.append((pair, tuple(row[k] for k in pair.key), event))
    return out


@dataclass
class PendingKey:
    """One key awaiting a durable verdict, from its latest event."""
    pair: PairConfig
    key: tuple[Any, ...]
    pk: str
    due: float  # epoch seconds: when it has settled
    offsets: set[tuple[TP, int]] = field(default_factory=set)  # the messages that carried it
    source_event: SourceEvent | None = None
    event_ts: float | None = None  # the latest commit time, epoch seconds


@dataclass(frozen=True)
class Ingested:
    dead_letter: str | None = None  # why the message is malformed
    restarted: tuple[Ident, ...] = ()  # keys already pending that changed again: their re-checks start over


class StreamKeys:
    def __init__(self, settings: Settings) -> None:
        self.settle_s = settings.validator.settle_delay_s
        self.by_table: dict[str, list[PairConfig]] = {}
        for pair in settings.pairs:
            self.by_table.setdefault(pair.source.table, []).append(pair)
            if pair.target.table != pair.source.table:
                self.by_table.setdefault(pair.target.table, []).append(pair)
        self.offsets = OffsetBook()
        self._keys: dict[Ident, PendingKey] = {}
        self.stats = {"messages": 0, "rows": 0, "own_writes": 0}

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[PendingKey]:
        return iter(list(self._keys.values()))

    def get(self, pair: str, pk: str) -> PendingKey | None:
        return self._keys.get((pair, pk))

    def ingest(self, rec: Record, now: float) -> Ingested:
        """Take one record read at `now` (epoch s). Records tagged as the service's own repair writes are skipped:
        a repair never triggers another repair of itself."""
        self.offsets.seen(rec.tp, rec.offset)
        self.stats["messages"] += 1
        if is_own_write(rec.headers):
            self.stats["own_writes"] += 1
            return Ingested()
        try:
            msg = parse_flat_message(rec.value or b"")
            rows = pair_rows(msg, self.by_table)
        except MalformedMessageError as exc:
            return Ingested(dead_letter=str(exc))
        es = msg.es / 1000.0 if msg.es else None
        due = settle_due(es, now, self.settle_s)
        coords = coordinates_from_headers(rec.headers, msg.gtid)
        restarted: list[Ident] = []
        for pair, key, event in rows:
            item = self._note(rec, pair, key, due, restarted)
            if event is not None:  # where in the binlog compensation re-reads it (invariant 4)
                item.source_event = event.at(coords).following(item.source_event)
            if es is not None:
                item.event_ts = max(item.event_ts or 0.0, es)
            self.stats["rows"] += 1
        return Ingested(restarted=tuple(restarted))

    def _note(self, rec: Record, pair: PairConfig, key: tuple[Any, ...], due: float,
              restarted: list[Ident]) -> PendingKey:
        pk = pk_string(key)
        item = self._keys.get((pair.name, pk))
        if item is None:
            item = self._keys[(pair.name, pk)] = PendingKey(pair, key, pk, due)
        else:  # a newer change: start over (settle, then check)
            restarted.append((pair.name, pk))
            item.due = max(item.due, due)
        if (rec.tp, rec.offset) not in item.offsets:
            item.offsets.add((rec.tp, rec.offset))
            self.offsets.hold(rec.tp, rec.offset)
        return item

    def due(self, now: float, busy: Callable[[PendingKey], bool]) -> dict[str, list[PendingKey]]:
        """Settled keys by pair name, leaving out those `busy` says are awaiting a re-check."""
        out: dict[str, list[PendingKey]] = {}
        for item in self._keys.values():
            if item.due <= now and not busy(item):
                out.setdefault(item.pair.name, []).append(item)
        return out

    def next_due(self, busy: Callable[[PendingKey], bool]) -> float | None:
        return min((i.due for i in self._keys.values() if not busy(i)), default=None)

    def events(self, pair: str, verdicts: Iterable[Verdict]) -> tuple[dict[str, SourceEvent], dict[str, float]]:
        """The source events and commit times of these keys (by pk), as the ledger records them."""
        events: dict[str, SourceEvent] = {}
        ts: dict[str, float] = {}
        for v in verdicts:
            item = self._keys.get((pair, v.pk))
            if item is not None:
                if item.source_event is not None:
                    events[v.pk] = item.source_event
                if item.event_ts is not None:
                    ts[v.pk] = item.event_ts
        return events, ts

    def release(self, pair: str, pk: str) -> PendingKey | None:
        """The key's verdict is durable: drop it and release its messages."""
        item = self._keys.pop((pair, pk), None)
        if item is not None:
            for tp, offset in item.offsets:
                self.offsets.release(tp, offset)
        return item

    def revoke(self, tps: Iterable[TP]) -> tuple[dict[TP, int], list[PendingKey]]:
        """Partitions lost to another consumer: their offsets still to commit, and the keys forgotten (any key
        carried by one of their messages: the new owner re-reads it)."""
        lost = set(tps)
        offsets = self.offsets.to_commit(lost)
        dropped = [i for i in self._keys.values() if any(tp in lost for tp, _ in i.offsets)]
        for item in dropped:
            self.release(item.pair.name, item.pk)
        self.offsets.drop(lost)
        return offsets, dropped
