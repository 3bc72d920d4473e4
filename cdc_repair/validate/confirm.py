"""Settle and re-check: a mismatch is believed only when it persists across `rechecks` re-checks (pure).

`Rechecks` holds the keys whose last check was a mismatch, each with the time it is due again. Its driver,
validate/confirmer.py's KeyConfirmer (which every validator path uses), calls `add(verdicts, now)` after a
check, `due(now)` to get the keys to check again, `feed(verdicts, now)` with their new verdicts, which returns
the **confirmed** ones (mismatch on the first check and on every one of the `rechecks` re-checks). A key found
consistent is dropped. A newer change of a pending key (the consumer sees a new event) calls
`forget(pair, pk)`: the key starts over.
With `rechecks == 0` a mismatch is confirmed at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdc_repair.config import PairConfig
from cdc_repair.model.verdict import Verdict


@dataclass
class _Pending:
    key: tuple[Any, ...]
    done: int  # re-checks already seen mismatching
    due_at: float


class Rechecks:
    def __init__(self, rechecks: int, delay_s: float) -> None:
        self.rechecks = rechecks
        self.delay_s = delay_s
        self._pending: dict[tuple[str, str], _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, verdicts: Iterable[Verdict], now: float) -> list[Verdict]:
        """First check's verdicts: schedule mismatches for re-check; return those confirmed at once (rechecks=0)."""
        confirmed = []
        for v in verdicts:
            if not v.is_mismatch:
                self._pending.pop((v.pair, v.pk), None)
            elif self.rechecks == 0:
                confirmed.append(v)
            else:
                self._pending[(v.pair, v.pk)] = _Pending(v.key, 0, now + self.delay_s)
        return confirmed

    def due(self, now: float) -> dict[str, list[tuple[Any, ...]]]:
        """Keys due for a re-check, by pair name."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for (pair, _pk), p in self._pending.items():
            if p.due_at <= now:
                out.setdefault(pair, []).append(p.key)
        return out

    def next_due(self) -> float | None:
        return min((p.due_at for p in self._pending.values()), default=None)

    def feed(self, verdicts: Iterable[Verdict], now: float) -> list[Verdict]:
        """Re-check verdicts: return the confirmed mismatches; consistent keys are dropped."""
        confirmed = []
        for v in verdicts:
            p = self._pending.get((v.pair, v.pk))
            if p is None:
                continue
            if not v.is_mismatch:
                del self._pending[(v.pair, v.pk)]
                continue
            p.done += 1
            if p.done >= self.rechecks:
                del self._pending[(v.pair, v.pk)]
                confirmed.append(v)
            else:
                p.due_at = now + self.delay_s
        return confirmed

    def forget(self, pair: str, pk: str) -> None:
        self._pending.pop((pair, pk), None)

    def pending(self, pair: str, pk: str) -> bool:
        return (pair, pk) in self._pending


class RespelledOnce:
    """Report a row whose key is spelled differently on the two sides once: the scan meets it under both
    spellings ('key10' from the source, 'KEY10' from the target); both verdicts name the source's spelling.
    Only such rows are remembered (a set as big as their number), every other key is met once per scan."""

    def __init__(self, pair: PairConfig) -> None:
        self.key = set(pair.key)
        self.seen: set[str] = set()

    def once(self, verdicts: list[Verdict]) -> list[Verdict]:
        out = []
        for v in verdicts:
            if v.is_mismatch and self.key.intersection(v.columns):
                if v.pk in self.seen:
                    continue
                self.seen.add(v.pk)
            out.append(v)
        return out
