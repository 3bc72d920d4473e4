"""The pair's rules as a pure function: (pair, source row, target row) → `Verdict`. No I/O.

Why in model/: the validator checks with them and the repairer re-checks with them (forward and compensate),
so they live below both stages. The pair's settings are typed by the protocols below (`PairRules`, `Rule`,
`Normalize`), which `config.PairConfig` and friends satisfy: model/ imports nothing of the service but model/.

Public, stable API (the repairer calls it):

- `Verdict` (model/verdict.py) — the outcome, one of `KINDS`.
- `evaluate(pair, source_row, target_row, key=None) -> Verdict` — apply the first rule whose `when`
  matches the source row.
- `pk_string(key) -> str` (model/keys.py) — the canonical ledger key: a JSON array of the key values as strings
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

Value comparison: bytes and str compare by content (a BLOB `b"x"` equals a VARCHAR `"x"`; bytes that are
not UTF-8 compare as bytes); NULL never equals `''`; trailing spaces matter unless `normalize.trim`.
`when`/`target_values` scalars match by their string form, so `{status: 2}` matches 2, "2" and Decimal(2).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from cdc_repair.model.keys import key_bytes_equal, pk_string, value_bytes, value_text
from cdc_repair.model.verdict import DIFFERENT, EXTRA, MISSING, NOT_APPLICABLE, OK, Verdict

Scalar = str | int | float | bool | None
Row = Mapping[str, Any]


class Normalize(Protocol):
    """How values are compared (`config.NormalizeConfig`)."""

    @property
    def trim(self) -> bool: ...
    @property
    def float_digits(self) -> int | None: ...
    @property
    def timestamp_precision(self) -> int | None: ...
    @property
    def time_zone(self) -> str | None: ...


class Rule(Protocol):
    """One rule of a pair (`config.RuleConfig`)."""

    @property
    def when(self) -> Mapping[str, Scalar | list[Scalar]]: ...
    @property
    def expect(self) -> str: ...  # equal | exists | if_exists | absent | none
    @property
    def columns(self) -> Sequence[str] | None: ...
    @property
    def target_values(self) -> Mapping[str, Scalar]: ...


class PairRules(Protocol):
    """What the rules read of a pair (`config.PairConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def key(self) -> Sequence[str]: ...
    @property
    def orphans(self) -> str: ...  # delete | ignore
    @property
    def normalize(self) -> Normalize: ...
    def effective_rules(self) -> Sequence[Rule]: ...
    def compare_columns(self, table_columns: list[str] | None = None) -> list[str]: ...


@dataclass(frozen=True)
class _Plain:
    """No normalisation (`NormalizeConfig()`'s defaults)."""

    trim: bool = False
    float_digits: int | None = None
    timestamp_precision: int | None = None
    time_zone: str | None = None


PLAIN: Normalize = _Plain()


def key_of(pair: PairRules, row: Row) -> tuple[Any, ...]:
    """The key tuple of a row (missing key column → KeyError naming it)."""
    return tuple(row[k] for k in pair.key)


# ---------------------------------------------------------------- evaluate


def evaluate(pair: PairRules, source_row: Row | None, target_row: Row | None,
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


def match_rule(pair: PairRules, source_row: Row) -> tuple[int | None, Rule | None]:
    """The first rule whose `when` matches the source row (index, rule), or (None, None)."""
    for i, rule in enumerate(pair.effective_rules()):
        if all(_when_matches(source_row.get(col), want) for col, want in rule.when.items()):
            return i, rule
    return None, None


def rule_columns(pair: PairRules, rule: Rule, row_columns: Sequence[str] = ()) -> list[str]:
    """Columns a rule compares with the source. `equal` with `columns: None` → the pair's compare columns
    (when neither `compare` nor `columns` is declared: every column of the row but key and ignored)."""
    if rule.columns is not None:
        return list(rule.columns)
    if rule.expect != "equal":
        return []
    return pair.compare_columns(list(row_columns) or None)


def differing_columns(pair: PairRules, rule: Rule, source_row: Row, target_row: Row) -> list[str]:
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


def source_spelled(pair: PairRules, verdict: Verdict) -> Verdict:
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
    return value_text(value) == str(want)


# ---------------------------------------------------------------- normalisation


def values_equal(a: Any, b: Any, norm: Normalize | None = None) -> bool:
    """True when two column values are the same under the pair's normalisation. NULL ≠ ''."""
    norm = norm or PLAIN
    a, b = normalize_value(a, norm), normalize_value(b, norm)
    if a is None or b is None:
        return a is None and b is None
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, bytes) or isinstance(b, bytes):
        return value_bytes(a) == value_bytes(b)
    if isinstance(a, int | float | decimal.Decimal) and isinstance(b, int | float | decimal.Decimal):
        return bool(decimal.Decimal(str(a)) == decimal.Decimal(str(b)))
    return value_text(a) == value_text(b)


def normalize_value(value: Any, norm: Normalize) -> Any:
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


def needed_columns(pair: PairRules) -> list[str] | None:
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
