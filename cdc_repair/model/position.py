"""Binlog positions (pure values): where a reader is, and where it may safely resume."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SUFFIX = re.compile(r"\.(\d+)$")


def file_index(name: str) -> int:
    """The numeric suffix of a binlog file name (`binlog.000042` → 42); -1 when there is none."""
    m = _SUFFIX.search(name)
    return int(m.group(1)) if m else -1


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    """A resume point: `file`:`pos` is the start of the next event group (a transaction boundary).

    `gtid_set` is informative (MariaDB `domain-server-seq,...` or MySQL `uuid:1-n,...`): resuming always uses
    file and position, which works with GTID on or off.
    """

    file: str
    pos: int
    gtid_set: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def key(self) -> tuple[int, str, int]:
        """Sort key: binlog files are ordered by their numeric suffix, then by offset."""
        return (file_index(self.file), self.file, self.pos)

    def is_after(self, other: BinlogPosition) -> bool:
        return self.key() > other.key()


def bytes_between(start: BinlogPosition, end: BinlogPosition, file_sizes: dict[str, int]) -> int:
    """Binlog bytes from `start` to `end` given the size of every file (`SHOW BINARY LOGS`); 0 if not after."""
    if not end.is_after(start):
        return 0
    if start.file == end.file:
        return end.pos - start.pos
    total = max(0, file_sizes.get(start.file, start.pos) - start.pos)
    lo, hi = file_index(start.file), file_index(end.file)
    for name, size in file_sizes.items():
        if lo < file_index(name) < hi:
            total += size
    return total + end.pos
