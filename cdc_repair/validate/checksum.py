"""Chunk-checksum SQL as values (pure): keyset ranges, per-row hash, COUNT + exact SUM of 64-bit row hashes.

Per-row hash (computed in the server, the same expression on both sides): the first 64 bits of SHA1 over

    CONCAT_WS('#', key…, c1, CRC32C(blob2), CRC32(blob2), c3, …, bitmap, len(c1), len(c3), … [, rule marker])

* the key's bytes are hashed (a payload moved to another key, or a key re-spelled under a case-insensitive or
  PAD SPACE collation, changes the hash);
* the ISNULL bitmap (an integer, bit i = column i is NULL) separates NULL from '' (CONCAT_WS skips NULLs);
* the LENGTH of every string column makes the `#`-joined string unambiguous (`('a#','b')` vs `('a','#b')`);
* BLOB/TEXT/JSON columns are pre-hashed by two CRCs of different polynomials (CRC-32C and CRC-32: 64 bits,
  every change within 32 consecutive bits caught with certainty), so a 4 MB value never meets
  max_allowed_packet in CONCAT_WS and SHA1 reads 30 bytes instead of the value.

SHA1 is not linear (unlike a CRC, where the same edit in two rows shifts both CRCs by the same XOR pattern and
an XOR or plain SUM over a chunk can cancel): each row's 64 bits are pseudo-random, so a chunk checksum of
`COUNT(*)` and `SUM(h)` as an exact DECIMAL (no wrap-around: duplicates do not cancel either) misses k ≥ 1
differing rows with probability ≈ 2^-64; a missing or extra row always changes COUNT. The server computes SHA1
with the CPU's SHA extensions: measured 1.9x the server time of pt-table-sync's `BIT_XOR(CRC32(…))` per row,
against 2.4x for the two CRC halves with murmur3's fmix32 we used before (see docs/validate.md). Without
CRC32C on the server (MySQL, MariaDB < 10.8) long columns are pre-hashed by MD5 (slower, same guarantees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc_repair.config import PairConfig, RuleConfig, Scalar
from cdc_repair.db.sql import Statement, quote_columns, quote_ident, quote_table

Key = tuple[Any, ...]

# Column types pre-hashed (CRC32C + CRC32, or MD5; keeps CONCAT_WS below max_allowed_packet).
LONG_TYPES = frozenset({"tinyblob", "blob", "mediumblob", "longblob", "tinytext", "text", "mediumtext", "longtext",
                        "json", "geometry"})
# Types whose values are strings (their LENGTH goes into the hash to keep column boundaries).
STRING_TYPES = frozenset({"char", "varchar", "binary", "varbinary", "enum", "set"})


@dataclass(frozen=True)
class HashSpec:
    """One side's per-row value as SQL (`sql`, a BIGINT UNSIGNED expression) with its parameters; also used
    for a rule marker or a constant appended to the hashed string."""

    sql: str
    params: tuple[Any, ...] = ()


def _sha64(text: str) -> str:
    """The first 64 bits of SHA1(text) as a BIGINT UNSIGNED."""
    return f"CAST(CONV(LEFT(SHA1({text}), 16), 16, 10) AS UNSIGNED)"


def row_text(columns: Sequence[str], types: dict[str, str], pre: str, marker: HashSpec | None = None) -> str:
    """`CONCAT_WS('#', …)` of a row (see module docstring); `pre` pre-hashes long columns (`{q}` is the column)."""
    parts: list[str] = []
    lengths: list[str] = []
    for col in columns:
        q = quote_ident(col)
        kind = types.get(col, "").lower()
        if kind in LONG_TYPES:
            parts.append(pre.format(q=q))
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


def row_hash(columns: Sequence[str], types: dict[str, str], marker: HashSpec | None = None, *,
             crc32c: bool = True) -> HashSpec:
    """The per-row hash over `columns` (key first; see module docstring): long columns pre-hashed by CRC32C and
    CRC32 when the server has CRC32C(), else by MD5."""
    pre = "CRC32C({q}), CRC32({q})" if crc32c else "MD5({q})"
    return HashSpec(_sha64(row_text(columns, types, pre, marker)), marker.params if marker is not None else ())


def md5_row_hash(columns: Sequence[str], types: dict[str, str]) -> HashSpec:
    """The classic per-row hash (first 64 bits of MD5 over the same row string, blobs pre-hashed by MD5): what the
    full scan used before issue 13, kept for the benchmark's baseline."""
    return HashSpec(f"CAST(CONV(LEFT(MD5({row_text(columns, types, 'MD5({q})')}), 16), 16, 10) AS UNSIGNED)")


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
    """`COUNT(*)` and the exact hash sum over one key range."""
    pred, params = range_predicate(key_cols, lower, upper, where)
    return _statement(f"SELECT COUNT(*), COALESCE(SUM({h.sql}), 0) FROM {quote_table(table)} WHERE {pred}",
                      h.params + params)


def chunk_checksum_limit(table: str, key_cols: Sequence[str], h: HashSpec, lower: Key | None, limit: int,
                         where: str | None = None) -> Statement:
    """The next `limit` rows after `lower` in one statement: `COUNT(*)`, the hash sum, and `MAX(first key
    column)` (the chunk's upper bound for a one-column key), so a chunk costs one round trip on the source."""
    pred, params = range_predicate(key_cols, lower, None, where)
    order = quote_columns(key_cols)
    first = quote_ident(key_cols[0])
    inner = (f"SELECT {order}, {h.sql} AS `_h` FROM {quote_table(table)} WHERE {pred} ORDER BY {order} "
             f"LIMIT {int(limit)}")
    return _statement(f"SELECT COUNT(*), COALESCE(SUM(`_h`), 0), MAX({first}) FROM ({inner}) AS `_c`",
                      h.params + params)


def _bucket(q: str, bucket: int, offset: int) -> str:
    return f"({q} - {int(offset)}) DIV {int(bucket)}" if offset else f"{q} DIV {int(bucket)}"


def bucket_checksums_limit(table: str, key: str, h: HashSpec, lower: Key | None, limit: int, bucket: int,
                           where: str | None = None, offset: int = 0) -> Statement:
    """Like `chunk_checksum_limit` for an integer key, but one (COUNT, SUM, MAX key) per bucket
    `(key - offset) DIV bucket` (`offset` ≤ every key, so buckets never straddle 0): a dirty chunk then names
    its dirty buckets without reading the chunk again."""
    pred, params = range_predicate([key], lower, None, where)
    q = quote_ident(key)
    inner = f"SELECT {q}, {h.sql} AS `_h` FROM {quote_table(table)} WHERE {pred} ORDER BY {q} LIMIT {int(limit)}"
    return _statement(f"SELECT {_bucket(q, bucket, offset)} AS `_b`, COUNT(*), COALESCE(SUM(`_h`), 0), MAX({q}) "
                      f"FROM ({inner}) AS `_c` GROUP BY `_b`", h.params + params)


def bucket_checksums(table: str, key: str, h: HashSpec, lower: Key | None, upper: Key | None, bucket: int,
                     where: str | None = None, offset: int = 0) -> Statement:
    """(bucket, COUNT, SUM) per `(key - offset) DIV bucket` over one key range."""
    pred, params = range_predicate([key], lower, upper, where)
    q = quote_ident(key)
    return _statement(f"SELECT {_bucket(q, bucket, offset)} AS `_b`, COUNT(*), COALESCE(SUM({h.sql}), 0) "
                      f"FROM {quote_table(table)} WHERE {pred} GROUP BY `_b`", h.params + params)


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
