"""Where each change goes (pure): Canal-compatible PK hash partitions and topic names.

Ordering contract: every change of one primary key lands in the same partition, in binlog order. The partition
is computed here as Canal's MQ producer does (`MQMessageUtils.messagePartition` with `partitionHash` `$pk$`):

    h = database.hashCode()  if canal.mq.database.hash (Canal's default: true)  else 0
    for each pk value: h ^= value.hashCode()          (Java String.hashCode; NULL as "")
    partition = abs(abs(h) % N)

`partition_hash: database_and_key` (default) is that formula; `key` leaves the database name out (Canal with
`canal.mq.database.hash=false`). A table without a primary key hashes the database name alone (partition 0 with
`key`). DDL goes to partition 0. The record key is the PK text (informative for single-row messages; a
multi-row message carries no key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

PartitionHash = Literal["database_and_key", "key"]
PARTITION_HASHES: tuple[PartitionHash, ...] = ("database_and_key", "key")

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


def hash_seed(database: str, mode: PartitionHash = "database_and_key") -> int:
    """The starting value of the XOR: the database name's hash with Canal's default, 0 for key-only."""
    return java_string_hash(database) if mode == "database_and_key" else 0


def partition_for(pk_values: Sequence[str | None], partitions: int, *, database: str = "",
                  mode: PartitionHash = "database_and_key") -> int:
    """Canal's PK hash partition of one row (see the module docstring)."""
    if partitions <= 1:
        return 0
    h = hash_seed(database, mode)
    for value in pk_values:
        h ^= java_string_hash(value or "")
    return abs(h) % partitions


def partitions_of(images: Sequence[Sequence[str | None]], pk_indexes: Sequence[int], partitions: int,
                  seed: int) -> list[int]:
    """`partition_for` of many row images at once (the capture hot path); `seed` from `hash_seed`."""
    if partitions <= 1:
        return [0] * len(images)
    if len(pk_indexes) == 1:
        i = pk_indexes[0]
        return [abs(seed ^ java_string_hash(image[i] or "")) % partitions for image in images]
    out = []
    for image in images:
        h = seed
        for i in pk_indexes:
            h ^= java_string_hash(image[i] or "")
        out.append(abs(h) % partitions)
    return out


def key_bytes(pk_values: Sequence[str | None]) -> bytes:
    """Record key for one row: the PK values joined by ',' (NULL as empty)."""
    if len(pk_values) == 1:
        return (pk_values[0] or "").encode()
    return ",".join(v or "" for v in pk_values).encode()


def topic_for(mode: str, name: str, prefix: str, database: str, table: str) -> str:
    """`single`: every table in `name`. `per_table`: `prefix + db_table` (Canal's dynamicTopic, '.' → '_')."""
    if mode == "per_table" and table:
        return prefix + f"{database}_{table}".replace(".", "_")
    return name
