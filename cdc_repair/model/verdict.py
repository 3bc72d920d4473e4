"""The outcome of checking one key (pure): `Verdict` and its kinds.

Why here: the validator produces verdicts, the ledger stores the mismatches, the repairer re-checks with the
same rules; a value all of them share lives below them (see `model/rules.py` for how a verdict is reached).

Kinds: `ok`, `missing_in_target`, `extra_in_target`, `different`, `not_applicable`.
`MISMATCH_KINDS` are the ones that go to the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdc_repair.model.keys import pk_string

OK = "ok"
MISSING = "missing_in_target"
EXTRA = "extra_in_target"
DIFFERENT = "different"
NOT_APPLICABLE = "not_applicable"
KINDS = (OK, MISSING, EXTRA, DIFFERENT, NOT_APPLICABLE)
INCONSISTENCY_KINDS: tuple[str, ...] = (MISSING, EXTRA, DIFFERENT)  # the ledger's kinds, in a stable order
MISMATCH_KINDS = frozenset(INCONSISTENCY_KINDS)

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one key of one pair (see the module docstring for the kinds).

    `key` is the tuple of key values, as read or as given; `columns` the differing columns, sorted by the pair's
    column order; `source` / `target` the row dicts that were compared, or None when absent; `rule` the index of
    the rule that matched, or None."""

    pair: str
    key: tuple[Any, ...]
    kind: str
    columns: tuple[str, ...] = ()
    source: Row | None = None
    target: Row | None = None
    rule: int | None = None
    # the source row's key when it spells the requested key otherwise ('key10' answering 'KEY10' under a _ci
    # collation): the ledger records the row under it, so both spellings make one entry
    source_key: tuple[Any, ...] | None = None

    @property
    def is_mismatch(self) -> bool:
        return self.kind in MISMATCH_KINDS

    @property
    def pk(self) -> str:
        """Canonical ledger key (see `pk_string`)."""
        return pk_string(self.key)

    @property
    def ledger_pk(self) -> str:
        """The pk the ledger records the row under: the source row's own spelling when it has one."""
        return pk_string(self.source_key) if self.source_key is not None else self.pk

