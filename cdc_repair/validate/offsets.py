"""Which offsets the stream validator may commit (pure: no broker, no clock).

Why: Kafka remembers one offset per partition, "everything before this is done". A message is done only when
every key it carried has a durable verdict, and keys finish out of order (a mismatch waits for its re-checks
while later keys are settled). So per partition the committable offset is the first message still holding an
unfinished key, else one past the last message seen: a crash re-delivers, and re-checks, exactly the unfinished
ones (at-least-once; the ledger's upsert makes a repeat harmless).
"""

from __future__ import annotations

from collections.abc import Iterable

from cdc_repair.sink.kafka_consumer import TP


class OffsetBook:
    """Per partition: the messages seen, those still holding keys (with how many), and what was committed."""

    def __init__(self) -> None:
        self._high: dict[TP, int] = {}  # one past the last offset seen
        self._held: dict[TP, dict[int, int]] = {}  # offset → keys of that message without a durable verdict
        self._committed: dict[TP, int] = {}

    def seen(self, tp: TP, offset: int) -> None:
        """A message was read (held or not: a skipped or dead-lettered message is done once seen)."""
        self._high[tp] = max(self._high.get(tp, 0), offset + 1)
        self._held.setdefault(tp, {})

    def hold(self, tp: TP, offset: int) -> None:
        """One more key of this message awaits its verdict."""
        counts = self._held.setdefault(tp, {})
        counts[offset] = counts.get(offset, 0) + 1

    def release(self, tp: TP, offset: int) -> None:
        """One key of this message has a durable verdict (a partition already handed over is ignored)."""
        counts = self._held.get(tp)
        if counts is None or offset not in counts:
            return
        counts[offset] -= 1
        if counts[offset] <= 0:
            del counts[offset]

    def safe(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Per partition seen: the first offset with an unfinished key, else one past the last message seen."""
        out = {}
        for tp in list(self._high) if tps is None else tps:
            if tp in self._high:
                counts = self._held.get(tp)
                out[tp] = min(counts) if counts else self._high[tp]
        return out

    def to_commit(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """The safe offsets that differ from what was last committed."""
        return {tp: o for tp, o in self.safe(tps).items() if self._committed.get(tp) != o}

    def committed(self, offsets: dict[TP, int]) -> None:
        """The broker accepted these offsets."""
        self._committed.update(offsets)

    def last_committed(self, tp: TP) -> int | None:
        return self._committed.get(tp)

    def drop(self, tps: Iterable[TP]) -> None:
        """Forget partitions handed to another consumer (the new owner re-reads from the committed offset)."""
        for tp in tps:
            self._high.pop(tp, None)
            self._held.pop(tp, None)
            self._committed.pop(tp, None)


def consumer_lag(ends: dict[TP, int], committed: dict[TP, int | None], beginnings: dict[TP, int]) -> dict[TP, int]:
    """Messages behind the end per partition: end offset minus committed offset (a partition never committed
    counts from its first offset); never negative."""
    out = {}
    for tp, end in ends.items():
        base = committed.get(tp)
        if base is None:
            base = beginnings.get(tp, 0)
        out[tp] = max(0, end - base)
    return out
