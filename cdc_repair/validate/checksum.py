"""Chunk-checksum SQL as values (pure): keyset ranges, per-row hash, COUNT + SUM of mixed 64-bit row hashes.

Per-row hash (computed in the server, the same expression on both sides): two 32-bit CRCs of two spellings of
the row, one per half, each over

    CONCAT_WS('#', key…, c1, PRE(blob2), c3, …, bitmap, len(c1), len(c3), … [, rule marker])

    half A = CRC32(…)   with PRE = CRC32     half B = CRC32C(…)   with PRE = CRC32C

* the key's bytes are hashed (a payload moved to another key, or a key re-spelled under a case-insensitive or
  PAD SPACE collation, changes the hash);
* the ISNULL bitmap (an integer, bit i = column i is NULL) separates NULL from '' (CONCAT_WS skips NULLs);
* the LENGTH of every string column makes the `#`-joined string unambiguous (`('a#','b')` vs `('a','#b')`);
* BLOB/TEXT/JSON columns are pre-hashed by that half's CRC, so a 4 MB value never meets max_allowed_packet
  in CONCAT_WS; each half sees the value through its own polynomial.

The row's 64 bits are (A, B): two different polynomials (CRC-32 and Castagnoli), so a change goes unseen
only if both miss it: never for a change within 32 consecutive bits of the string (one byte, one microsecond,
a case or a NUL), else with probability 2^-64. CRCs are linear over GF(2), so the same edit in two rows shifts
both rows' CRCs by the same XOR pattern, and an XOR (or even a plain SUM) over a chunk could let them cancel.
So each half goes through murmur3's fmix32 (a bijection: different CRCs stay different; non-linear: the shift
of one row no longer predicts another's) before the chunk sums them: chunk checksum = `COUNT(*)` and
`SUM(fmix32(A) * 2^32 + fmix32(B))` as an exact DECIMAL (no wrap-around, so duplicates do not cancel either).
Per chunk with k ≥ 2 differing rows, the sum of their pseudo-random 64-bit deltas is 0 with probability
≈ 2^-62; a chunk with one differing row always differs (a bijection of a changed value changes), and a
missing or extra row always changes COUNT. Without CRC32C on the server (MySQL, MariaDB < 10.8) the halves
are the first two 32-bit words of MD5 of the same string (slower, same guarantees).

The mixing reads each half twice, so chunk statements compute the halves in a derived table that the server
materialises (`ORDER BY … LIMIT n`, or `LIMIT 2^64-1` where the scan has no bound) and mix them outside it;
per-row hashes (leaf compares) are `A * 2^32 + B`, compared by value in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc_repair.config import PairConfig, RuleConfig, Scalar
from cdc_repair.db.sql import Statement, quote_columns, quote_ident, quote_table

Key = tuple[Any, ...]

# Column types pre-hashed (CRC32/CRC32C/MD5 of the value; keeps CONCAT_WS below max_allowed_packet).
LONG_TYPES = frozenset({"tinyblob", "blob", "mediumblob", "longblob", "tinytext", "text", "mediumtext", "longtext",
                        "json", "geometry"})
# Types whose values are strings (their LENGTH goes into the hash to keep column boundaries).
STRING_TYPES = frozenset({"char", "varchar", "binary", "varbinary", "enum", "set"})


@dataclass(frozen=True)
class HashSpec:
    """The row hash of one side: its two 32-bit halves as SQL (`a`, `b`) with their parameters.

    `HashSpec(sql)` (one expression) is accepted for a marker or a constant: it is then both halves."""

    a: str
    params_a: tuple[Any, ...] = ()
    b: str | None = None
    params_b: tuple[Any, ...] | None = None

    @property
    def sql(self) -> str:
        """The per-row 64-bit value `A * 2^32 + B` (what leaf compares read)."""
        return self.a if self.b is None else f"(({self.a}) << 32 | ({self.b}))"

    @property
    def params(self) -> tuple[Any, ...]:
        return self.params_a if self.b is None else self.params_a + (self.params_b or ())

    def halves(self) -> tuple[str, tuple[Any, ...]]:
        """`A AS _ha, B AS _hb` for a derived table, and its parameters."""
        if self.b is None:  # one 64-bit expression: its two words
            return f"({self.a}) >> 32 AS `_ha`, ({self.a}) & 4294967295 AS `_hb`", self.params_a * 2
        return f"{self.a} AS `_ha`, {self.b} AS `_hb`", self.params


def fmix32(x: str) -> str:
    """murmur3's 32-bit finaliser over the column `x` (a bijection of 0..2^32-1; BIGINT UNSIGNED arithmetic:
    each product stays below 2^64)."""
    m = f"(({x} ^ ({x} >> 16)) * 2246822507 & 4294967295)"
    m = f"(({m} ^ ({m} >> 13)) * 3266489909 & 4294967295)"
    return f"({m} ^ ({m} >> 16))"


MIXED_SUM = f"COALESCE(SUM({fmix32('`_ha`')} * 4294967296 + {fmix32('`_hb`')}), 0)"
NO_BOUND = "18446744073709551615"  # a LIMIT the server cannot merge away: the derived table is materialised


def row_hash(columns: Sequence[str], types: dict[str, str], marker: HashSpec | None = None, *,
             crc32c: bool = True) -> HashSpec:
    """The per-row hash over `columns` (key first; see module docstring): CRC32/CRC32C halves when the server
    has CRC32C(), else the two first 32-bit words of MD5."""
    def text(pre: str) -> str:
        parts: list[str] = []
        lengths: list[str] = []
        for col in columns:
            q = quote_ident(col)
            kind = types.get(col, "").lower()
            if kind in LONG_TYPES:
                parts.append(f"{pre}({q})")
            else:
                parts.append(q)
                if kind in STRING_TYPES or not kind:
                    lengths.append(f"LENGTH({q})")
        # one integer per 60 columns (a shift by 64 or more gives 0)
        bitmaps = [" | ".join(f"ISNULL({quote_ident(c)}) << {i}" for i, c in enumerate(columns[at:at + 60]))
                   for at in range(0, len(columns), 60)] or ["0"]
        pieces = [*parts, *(f"({b})" for b in bitmaps), *lengths]
        if marker is not None:
            pieces.append(marker.sql)
        return "CONCAT_WS('#', " + ", ".join(pieces) + ")"

    mp = marker.params if marker is not None else ()
    if crc32c:
        return HashSpec(f"CRC32({text('CRC32')})", mp, f"CRC32C({text('CRC32C')})", mp)
    md5 = f"MD5({text('MD5')})"
    return HashSpec(f"CONV(LEFT({md5}, 8), 16, 10)", mp, f"CONV(SUBSTRING({md5}, 9, 8), 16, 10)", mp)


def md5_row_hash(columns: Sequence[str], types: dict[str, str]) -> HashSpec:
    """The classic per-row hash (first 64 bits of MD5 over the same row string, blobs pre-hashed by MD5), as one
    expression: what the full scan used before, kept for the benchmark's baseline."""
    h = row_hash(columns, types, crc32c=False)
    inner = h.a[len("CONV(LEFT("):-len(", 8), 16, 10)")]
    return HashSpec(f"CAST(CONV(LEFT({inner}, 16), 16, 10) AS UNSIGNED)")


def projection(pair: PairConfig, table_columns: Sequence[str]) -> list[str]:
    """Columns hashed for `pair`: everything the rules read, but the key (key equality is the range's job)."""
    cols: list[str] = []
    base = pair.compare_columns(list(table_columns))
    for rule in pair.effective_rules():
        cols += list(rule.when) + list(rule.target_values)
        if rule.columns is not None:
            cols += rule.columns
        elif rule.expect == "equal":
            cols += base
    key = set(pair.key)
    return [c for c in dict.fromkeys(cols) if c not in key]


def rule_marker(pair: PairConfig) -> HashSpec | None:
    """Source-side marker for rows whose rule rejects an identical target copy (None when no rule can)."""
    whens: list[str] = []
    params: list[Any] = []
    any_marker = False
    for rule in pair.effective_rules():
        bad_sql, bad_params = _copy_violation(rule)
        cond, cond_params = _when_sql(rule.when)
        whens.append(f"WHEN {cond} THEN {bad_sql}")
        params += cond_params + bad_params
        any_marker = any_marker or bad_sql != "''"
    if not any_marker:
        return None
    return HashSpec("CASE " + " ".join(whens) + " ELSE '' END", tuple(params))


def _copy_violation(rule: RuleConfig) -> tuple[str, list[Any]]:
    """SQL giving '!' when an exact copy of this source row would break `rule`, else ''."""
    if rule.expect == "absent":
        return "'!'", []
    if rule.expect == "none" or not rule.target_values:
        return "''", []
    conds, params = [], []
    for col, want in rule.target_values.items():
        if col in rule.when and rule.when[col] == want:
            continue  # the source matched `when`, so an exact copy holds this value
        conds.append(f"NOT ({quote_ident(col)} <=> %s)")
        params.append(want)
    if not conds:
        return "''", []
    return f"IF({' OR '.join(conds)}, '!', '')", params


def _when_sql(when: dict[str, Scalar | list[Scalar]]) -> tuple[str, list[Any]]:
    if not when:
        return "TRUE", []
    conds: list[str] = []
    params: list[Any] = []
    for col, want in when.items():
        q = quote_ident(col)
        values = want if isinstance(want, list) else [want]
        alts = []
        for v in values:
            if v is None:
                alts.append(f"{q} IS NULL")
            else:
                alts.append(f"{q} = %s")
                params.append(int(v) if isinstance(v, bool) else v)
        conds.append("(" + " OR ".join(alts) + ")")
    return " AND ".join(conds), params


# ---------------------------------------------------------------- ranges


def range_predicate(key_cols: Sequence[str], lower: Key | None, upper: Key | None,
                    where: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """`key > lower AND key <= upper [AND (where)]` (either bound may be None)."""
    conds: list[str] = []
    params: list[Any] = []
    if lower is not None:
        sql, p = _compare(key_cols, lower, ">")
        conds.append(sql)
        params += p
    if upper is not None:
        sql, p = _compare(key_cols, upper, "<=")
        conds.append(sql)
        params += p
    if where:
        conds.append(f"({where.replace('%', '%%')})")  # the driver formats %s placeholders
    return (" AND ".join(conds) if conds else "TRUE"), tuple(params)


def _compare(key_cols: Sequence[str], bound: Key, op: str) -> tuple[str, list[Any]]:
    """Lexicographic key comparison `key op bound` for op in > / <=, expanded for composite keys."""
    strict = op[0]  # '>' or '<'
    ors: list[str] = []
    params: list[Any] = []
    n = len(key_cols)
    for i in range(n):
        ands = [f"{quote_ident(key_cols[j])} = %s" for j in range(i)]
        last_op = op if i == n - 1 else strict
        ands.append(f"{quote_ident(key_cols[i])} {last_op} %s")
        params += list(bound[: i + 1])
        ors.append("(" + " AND ".join(ands) + ")")
    return ("(" + " OR ".join(ors) + ")" if n > 1 else ors[0]), params


def _statement(sql: str, params: tuple[Any, ...]) -> Statement:
    """With no parameters the driver does no %-formatting: undo the escaping of `where`."""
    return Statement(sql if params else sql.replace("%%", "%"), params)


def chunk_checksum(table: str, key_cols: Sequence[str], h: HashSpec, lower: Key | None, upper: Key | None,
                   where: str | None = None) -> Statement:
    """`COUNT(*)` and the mixed hash sum over one key range."""
    pred, params = range_predicate(key_cols, lower, upper, where)
    halves, hp = h.halves()
    return _statement(f"SELECT COUNT(*), {MIXED_SUM} FROM (SELECT {halves} FROM {quote_table(table)} WHERE {pred} "
                      f"LIMIT {NO_BOUND}) AS `_c`", hp + params)


def chunk_checksum_limit(table: str, key_cols: Sequence[str], h: HashSpec, lower: Key | None, limit: int,
                         where: str | None = None) -> Statement:
    """The next `limit` rows after `lower` in one statement: `COUNT(*)`, the mixed hash sum, and `MAX(first key
    column)` (the chunk's upper bound for a one-column key), so a chunk costs one round trip on the source."""
    pred, params = range_predicate(key_cols, lower, None, where)
    order = quote_columns(key_cols)
    first = quote_ident(key_cols[0])
    halves, hp = h.halves()
    inner = (f"SELECT {order}, {halves} FROM {quote_table(table)} WHERE {pred} ORDER BY {order} "
             f"LIMIT {int(limit)}")
    return _statement(f"SELECT COUNT(*), {MIXED_SUM}, MAX({first}) FROM ({inner}) AS `_c`", hp + params)


def _bucket(q: str, bucket: int, offset: int) -> str:
    return f"({q} - {int(offset)}) DIV {int(bucket)}" if offset else f"{q} DIV {int(bucket)}"


def bucket_checksums_limit(table: str, key: str, h: HashSpec, lower: Key | None, limit: int, bucket: int,
                           where: str | None = None, offset: int = 0) -> Statement:
    """Like `chunk_checksum_limit` for an integer key, but one (COUNT, SUM, MAX key) per bucket
    `(key - offset) DIV bucket` (`offset` ≤ every key, so buckets never straddle 0): a dirty chunk then names
    its dirty buckets without reading the chunk again."""
    pred, params = range_predicate([key], lower, None, where)
    q = quote_ident(key)
    halves, hp = h.halves()
    inner = (f"SELECT {q}, {halves} FROM {quote_table(table)} WHERE {pred} ORDER BY {q} LIMIT {int(limit)}")
    return _statement(f"SELECT {_bucket(q, bucket, offset)} AS `_b`, COUNT(*), {MIXED_SUM}, MAX({q}) "
                      f"FROM ({inner}) AS `_c` GROUP BY `_b`", hp + params)


def bucket_checksums(table: str, key: str, h: HashSpec, lower: Key | None, upper: Key | None, bucket: int,
                     where: str | None = None, offset: int = 0) -> Statement:
    """(bucket, COUNT, SUM) per `(key - offset) DIV bucket` over one key range."""
    pred, params = range_predicate([key], lower, upper, where)
    q = quote_ident(key)
    halves, hp = h.halves()
    inner = f"SELECT {q}, {halves} FROM {quote_table(table)} WHERE {pred} LIMIT {NO_BOUND}"
    return _statement(f"SELECT {_bucket(q, bucket, offset)} AS `_b`, COUNT(*), {MIXED_SUM} "
                      f"FROM ({inner}) AS `_c` GROUP BY `_b`", hp + params)


def row_hashes_in(table: str, key: str, h: HashSpec, ranges: Sequence[tuple[int, int]],
                  where: str | None = None) -> Statement:
    """`SELECT key, row hash` for rows whose key lies in any of the inclusive `ranges`."""
    q = quote_ident(key)
    conds = " OR ".join(f"({q} BETWEEN %s AND %s)" for _ in ranges)
    params = tuple(v for r in ranges for v in r)
    extra = f" AND ({where.replace('%', '%%')})" if where else ""
    return _statement(f"SELECT {q}, {h.sql} FROM {quote_table(table)} WHERE ({conds}){extra} ORDER BY {q}",
                      h.params + params)


def row_hashes(table: str, key_cols: Sequence[str], h: HashSpec, lower: Key | None, upper: Key | None,
               where: str | None = None) -> Statement:
    """`SELECT key…, row hash` over one key range, ordered by key (for the merge join)."""
    pred, params = range_predicate(key_cols, lower, upper, where)
    order = quote_columns(key_cols)
    return _statement(f"SELECT {order}, {h.sql} FROM {quote_table(table)} WHERE {pred} ORDER BY {order}",
                      h.params + params)


def nth_key(table: str, key_cols: Sequence[str], lower: Key | None, upper: Key | None, offset: int,
            where: str | None = None) -> Statement:
    """The key `offset` rows after `lower` (keyset: starts from the bound, reads only the index)."""
    pred, params = range_predicate(key_cols, lower, upper, where)
    order = quote_columns(key_cols)
    return _statement(f"SELECT {order} FROM {quote_table(table)} WHERE {pred} ORDER BY {order} "
                      f"LIMIT {int(offset)}, 1", params)


def min_key(table: str, key: str) -> Statement:
    return Statement(f"SELECT MIN({quote_ident(key)}), MAX({quote_ident(key)}) FROM {quote_table(table)}")


def column_types(schema: str, table: str) -> Statement:
    return Statement("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                     "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, table))


def estimated_rows(schema: str, table: str) -> Statement:
    return Statement("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                     (schema, table))
