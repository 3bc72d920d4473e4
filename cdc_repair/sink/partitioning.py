"""Where each change goes (pure): Canal-compatible PK hash partitions and topic names.

Ordering contract: every change of one primary key lands in the same partition, in binlog order. The partition
is computed here from the PK values (Canal's `partitionHash ... :$pk$`): `abs(hash(pk1) ^ hash(pk2) ...) % N`
with Java's `String.hashCode`, so a Canal consumer and ours agree on partitions. DDL goes to partition 0.
The record key is the PK text (informative for single-row messages; a multi-row message carries no key).
"""

from __future__ import annotations

from collections.abc import Sequence

_MASK = 0xFFFFFFFF


def java_string_hash(text: str) -> int:
    """Java `String.hashCode()` (UTF-16 code units, 32-bit signed)."""
    h = 0
    if text.isascii():
        for b in text.encode():
            h = (31 * h + b) & _MASK
    else:
        units = text.encode("utf-16-le")
        for i in range(0, len(units), 2):
            h = (31 * h + (units[i] | units[i + 1] << 8)) & _MASK
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(pk_values: Sequence[str | None], partitions: int) -> int:
    """Canal's PK hash partition: XOR of the Java hashes of the PK values (None as ""), abs, modulo."""
    if partitions <= 1:
        return 0
    h = 0
    for value in pk_values:
        h ^= java_string_hash(value or "")
    return abs(h) % partitions


def key_bytes(pk_values: Sequence[str | None]) -> bytes:
    """Record key for one row: the PK values joined by ',' (NULL as empty)."""
    return ",".join(v or "" for v in pk_values).encode()


def topic_for(mode: str, name: str, prefix: str, database: str, table: str) -> str:
    """`single`: every table in `name`. `per_table`: `prefix + db_table` (Canal's dynamicTopic, '.' → '_')."""
    if mode == "per_table" and table:
        return prefix + f"{database}_{table}".replace(".", "_")
    return name
