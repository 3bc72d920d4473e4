"""The pair's rules as a pure function: (pair, source row, target row) → `Verdict`. No I/O.

Public, stable API (the repairer calls it):

- `Verdict` — frozen dataclass: `pair` (pair name), `key` (tuple of key values, as read or as given),
  `kind` (one of `KINDS`), `columns` (differing columns, sorted by the pair's column order),
  `source` / `target` (the row dicts that were compared, or None when absent), `rule` (index of the
  rule that matched, or None).
- `evaluate(pair, source_row, target_row, key=None) -> Verdict` — apply the first rule whose `when`
  matches the source row.
- `pk_string(key) -> str` — the canonical ledger key: a JSON array of the key values as strings
  (`[5]`, `["5"]`, `[b"5"]` all give `["5"]`), so DB rows and Kafka strings meet in one ledger row.
- `normalize_value(value, norm)` — the value as compared (see NormalizeConfig).

Semantics of the rule expectations (RuleConfig.expect), evaluated on the *source* row's values:

- `equal`: the target row must exist, its `columns` (None → the pair's compare columns) must equal the
  source's, and every `target_values` column must hold the given value.
- `exists`: the target row must exist and hold `target_values`; `columns` are compared only when given.
- `if_exists`: no target row is fine; a target row present must hold `target_values` (and equal the
  source on `columns`, when given).
- `absent`: the target row must not exist (else `extra_in_target`).
- `none`: no expectation (`not_applicable`).

Source row absent: a target row present is an orphan → `extra_in_target`, unless `pair.orphans ==
"ignore"` (→ `not_applicable`); both absent → `ok`. Source row present and no rule matches → `not_applicable`.

Kinds: `ok`, `missing_in_target`, `extra_in_target`, `different`, `not_applicable`.
`MISMATCH_KINDS` are the ones that go to the ledger.

Value comparison: bytes and str compare by content (a BLOB `b"x"` equals a VARCHAR `"x"`; bytes that are
not UTF-8 compare as bytes); NULL never equals `''`; trailing spaces matter unless `normalize.trim`.
`when`/`target_values` scalars match by their string form, so `{status: 2}` matches 2, "2" and Decimal(2).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from cdc_repair.config import NormalizeConfig, PairConfig, RuleConfig, Scalar
from cdc_repair.model.keys import key_text
from cdc_repair.model.keys import pk_string as pk_string  # re-exported: many modules name it here

OK = "ok"
MISSING = "missing_in_target"
EXTRA = "extra_in_target"
DIFFERENT = "different"
NOT_APPLICABLE = "not_applicable"
KINDS = (OK, MISSING, EXTRA, DIFFERENT, NOT_APPLICABLE)
MISMATCH_KINDS = frozenset({MISSING, EXTRA, DIFFERENT})

Row = Mapping[str, Any]
RowT = TypeVar("RowT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one key of one pair (see the module docstring for the kinds)."""

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



def parse_pk(pk: str) -> tuple[str, ...]:
    """Inverse of `pk_string` (values come back as strings; MySQL converts them on comparison)."""
    values = json.loads(pk)
    if not isinstance(values, list):
        raise ValueError(f"ledger pk {pk!r} is not a JSON array")
    return tuple(str(v) for v in values)


def rows_by_requested_key(key_cols: Sequence[str], wanted: Mapping[str, Sequence[Any]], rows: Iterable[RowT],
                          fetch: Callable[[Sequence[Sequence[Any]]], Iterable[RowT]]) -> dict[str, RowT]:
    """`rows` (read with `key IN (...)` for the keys of `wanted`, a pk_string → key map) by the pk of the
    requested key each one answers.

    Under a case- or accent-insensitive or PAD SPACE collation the server answers 'case1' with the row 'Case1'.
    Pairing rows by Python equality would then call one row missing on one side and extra on the other (and a
    repair would delete it). So an unanswered key that loosely resembles a returned row's key (case, accents,
    trailing spaces) is re-read alone with `fetch([key])`, and the server's own equality decides. Integer keys
    and plainly absent rows (drafts with no online row) cost nothing extra.
    """
    by_pk = {pk_string([row[k] for k in key_cols]): row for row in rows}
    matched = {pk: row for pk, row in by_pk.items() if pk in wanted}
    foldable = [key for pk, key in wanted.items() if pk not in matched and any(map(_foldable, key))]
    if not foldable:
        return matched
    returned = {_loose(row[k] for k in key_cols) for row in by_pk.values()}
    for key in foldable:
        if _loose(key) in returned:
            found = list(fetch([key]))
            if len(found) == 1:
                matched[pk_string(key)] = found[0]
    return matched


_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _foldable(value: Any) -> bool:
    """Text a collation could match to a different spelling (numbers as text, e.g. keys from Kafka, cannot)."""
    if isinstance(value, bytes | bytearray):
        return True
    return isinstance(value, str) and _NUMBER.fullmatch(value) is None


def _loose(values: Iterable[Any]) -> tuple[str, ...]:
    """A key folded the way common collations compare (case, accents, trailing spaces): a superset test only."""
    out = []
    for value in values:
        text = unicodedata.normalize("NFKD", key_text(value).casefold())
        out.append("".join(c for c in text if not unicodedata.combining(c)).rstrip(" "))
    return tuple(out)


def key_of(pair: PairConfig, row: Row) -> tuple[Any, ...]:
    """The key tuple of a row (missing key column → KeyError naming it)."""
    return tuple(row[k] for k in pair.key)


# ---------------------------------------------------------------- evaluate


def evaluate(pair: PairConfig, source_row: Row | None, target_row: Row | None,
             key: Sequence[Any] | None = None) -> Verdict:
    """Apply the pair's rules to one key's rows (None = row absent) and return its Verdict.

    `key` defaults to the key read from whichever row is present.
    """
    if key is None:
        present = source_row if source_row is not None else target_row
        key = key_of(pair, present) if present is not None else ()
    key = tuple(key)

    source_key = None
    if source_row is not None and all(k in source_row for k in pair.key):
        spelled = key_of(pair, source_row)
        if spelled != key and pk_string(spelled) != pk_string(key):
            source_key = spelled

    def verdict(kind: str, columns: Sequence[str] = (), rule: int | None = None) -> Verdict:
        return Verdict(pair.name, key, kind, tuple(columns), source_row, target_row, rule, source_key)

    if source_row is None:
        if target_row is None:
            return verdict(OK)
        return verdict(NOT_APPLICABLE if pair.orphans == "ignore" else EXTRA)
    index, rule = match_rule(pair, source_row)
    if rule is None:
        return verdict(NOT_APPLICABLE)
    if rule.expect == "none":
        return verdict(NOT_APPLICABLE, rule=index)
    if rule.expect == "absent":
        return verdict(OK if target_row is None else EXTRA, rule=index)
    if target_row is None:
        return verdict(OK if rule.expect == "if_exists" else MISSING, rule=index)
    diffs = differing_columns(pair, rule, source_row, target_row)
    return verdict(DIFFERENT if diffs else OK, diffs, index)


def match_rule(pair: PairConfig, source_row: Row) -> tuple[int | None, RuleConfig | None]:
    """The first rule whose `when` matches the source row (index, rule), or (None, None)."""
    for i, rule in enumerate(pair.effective_rules()):
        if all(_when_matches(source_row.get(col), want) for col, want in rule.when.items()):
            return i, rule
    return None, None


def rule_columns(pair: PairConfig, rule: RuleConfig, row_columns: Sequence[str] = ()) -> list[str]:
    """Columns a rule compares with the source. `equal` with `columns: None` → the pair's compare columns
    (when neither `compare` nor `columns` is declared: every column of the row but key and ignored)."""
    if rule.columns is not None:
        return list(rule.columns)
    if rule.expect != "equal":
        return []
    return pair.compare_columns(list(row_columns) or None)


def differing_columns(pair: PairConfig, rule: RuleConfig, source_row: Row, target_row: Row) -> list[str]:
    """Columns that break the rule, in a stable order: key columns spelled differently first (a collation may
    pair 'KEY10' online with the source's 'key10', or 'k ' with 'k': a mirror's key must be byte-exact, whatever
    `normalize` says), then compared columns, then target_values ones."""
    norm = pair.normalize
    out = [k for k in pair.key if k in source_row and k in target_row
           and not key_bytes_equal(source_row[k], target_row[k])]
    for col in rule_columns(pair, rule, list(source_row)):
        if col not in out and not values_equal(source_row.get(col), target_row.get(col), norm):
            out.append(col)
    for col, want in rule.target_values.items():
        if col not in out and not _when_matches(target_row.get(col), want):
            out.append(col)
    return out


def key_bytes_equal(a: Any, b: Any) -> bool:
    """Key values equal byte for byte (text as UTF-8; numbers by value, as their types may differ per side)."""
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, str | bytes | bytearray) or isinstance(b, str | bytes | bytearray):
        return _as_bytes(a if not isinstance(a, bytearray) else bytes(a)) == _as_bytes(
            b if not isinstance(b, bytearray) else bytes(b))
    return _text(a) == _text(b)


def source_spelled(pair: PairConfig, verdict: Verdict) -> Verdict:
    """The verdict under the source row's own key spelling (when it has a source row): a key the server's
    collation answers with a differently spelled row ('KEY10' asked, 'key10' stored) is one row, reported once."""
    return verdict if verdict.source_key is None else replace(verdict, key=verdict.source_key)


def _when_matches(value: Any, want: Scalar | list[Scalar]) -> bool:
    if isinstance(want, list):
        return any(_scalar_eq(value, w) for w in want)
    return _scalar_eq(value, want)


def _scalar_eq(value: Any, want: Scalar) -> bool:
    if want is None or value is None:
        return want is None and value is None
    if isinstance(want, bool):
        want = int(want)
    return _text(value) == str(want)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return str(value.quantize(decimal.Decimal(1)))
    return str(value)


# ---------------------------------------------------------------- normalisation


def values_equal(a: Any, b: Any, norm: NormalizeConfig | None = None) -> bool:
    """True when two column values are the same under the pair's normalisation. NULL ≠ ''."""
    norm = norm or NormalizeConfig()
    a, b = normalize_value(a, norm), normalize_value(b, norm)
    if a is None or b is None:
        return a is None and b is None
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, bytes) or isinstance(b, bytes):
        return _as_bytes(a) == _as_bytes(b)
    if isinstance(a, int | float | decimal.Decimal) and isinstance(b, int | float | decimal.Decimal):
        return bool(decimal.Decimal(str(a)) == decimal.Decimal(str(b)))
    return _text(a) == _text(b)


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return _text(v).encode("utf-8", errors="surrogateescape")


def normalize_value(value: Any, norm: NormalizeConfig) -> Any:
    """The value as compared: bytearray → bytes; trim (spaces at both ends, like SQL TRIM) when
    `trim`; floats rounded to `float_digits` significant digits; datetimes truncated to
    `timestamp_precision` fractional digits and, when `time_zone` is set, naive values read in that zone
    and every value converted to UTC."""
    if value is None:
        return None
    if isinstance(value, bytearray):
        value = bytes(value)
    if norm.trim:
        if isinstance(value, str):
            return value.strip(" ")
        if isinstance(value, bytes):
            return value.strip(b" ")
    if isinstance(value, float) and norm.float_digits is not None:
        return float(f"{value:.{max(norm.float_digits, 1)}g}")
    if isinstance(value, dt.datetime):
        if norm.time_zone:
            zone = ZoneInfo(norm.time_zone)
            aware = value.replace(tzinfo=zone) if value.tzinfo is None else value
            value = aware.astimezone(dt.UTC).replace(tzinfo=None)
        if norm.timestamp_precision is not None:
            keep = 10 ** (6 - norm.timestamp_precision)
            value = value.replace(microsecond=value.microsecond - value.microsecond % keep)
    return value


def needed_columns(pair: PairConfig) -> list[str] | None:
    """Columns `evaluate` reads (key, `when`, compared, `target_values`), or None when it needs every column
    (mirror-like pairs with no declared `compare`/`columns`)."""
    cols: list[str] = list(pair.key)
    rules = pair.effective_rules()
    base = pair.compare_columns()
    for rule in rules:
        cols += list(rule.when) + list(rule.target_values)
        if rule.columns is not None:
            cols += rule.columns
        elif rule.expect == "equal":
            if not base:
                return None
            cols += base
    return list(dict.fromkeys(cols))
