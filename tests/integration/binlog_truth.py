"""The ground truth for capture fault tests: row changes decoded from the server's binlog files by `mariadb-binlog`.

Independent of the tailer (its own reader, its own decoder): a test compares what reached Kafka with this, never
with the tailer's bookkeeping. Tables are expected as `(id INT PRIMARY KEY, v INT, ...)` with `v` unique per change,
so each change is identified by (type, id, v). Also reported: the rows with a partial image (binlog_row_image
MINIMAL) and the DML logged as statements (binlog_format STATEMENT/MIXED), which hold no row image at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from capture_support import read_messages

from cdc_repair.model.position import file_index
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair_dev.devservices.broker import Broker
from cdc_repair_dev.devservices.mariadb import MariaDBServer

Change = tuple[str, int, int]  # (INSERT|UPDATE|DELETE, id, v)

_HEAD = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`")
_COL = re.compile(r"^###\s+@(\d+)=(\S+)")
_DML = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


@dataclass(frozen=True)
class RowImage:
    """One row of a rows event as `mariadb-binlog --verbose` prints it: column number -> printed value.

    `image` is the after image (INSERT, UPDATE) or the before image (DELETE); `before` is an UPDATE's before image.
    Values are as printed: strings keep mariadb-binlog's escapes, without the quotes."""

    kind: str
    image: dict[int, str]
    before: dict[int, str] = field(default_factory=dict)

    def change(self) -> Change:
        return (self.kind, int(self.image[1]), int(self.image[2]))

    def full(self, columns: int) -> bool:
        """Whether every image of the row holds all `columns` columns (binlog_row_image=FULL)."""
        every = set(range(1, columns + 1))
        return set(self.image) == every and (self.kind != "UPDATE" or set(self.before) == every)


def master_position(mariadb: MariaDBServer) -> tuple[str, int]:
    file, pos = mariadb.query("SHOW MASTER STATUS")[0][:2]
    return str(file), int(pos)


def binlog_changes(mariadb: MariaDBServer, database: str, table: str, start: tuple[str, int],
                   end: tuple[str, int], columns: int | None = None) -> list[Change]:
    """Every row change of `database.table` committed in [start, end), in binlog order.

    With `columns` (the table's column count), rows logged with a partial image (binlog_row_image MINIMAL or
    NOBLOB) are left out: `binlog_rows` has them."""
    rows = binlog_rows(mariadb, database, table, start, end)
    return [r.change() for r in rows if columns is None or r.full(columns)]


def binlog_rows(mariadb: MariaDBServer, database: str, table: str, start: tuple[str, int],
                end: tuple[str, int]) -> list[RowImage]:
    """Every row of a rows event of `database.table` committed in [start, end), in binlog order."""
    return list(_parse(_decode(mariadb, start, end), database, table))


def binlog_statements(mariadb: MariaDBServer, database: str, table: str, start: tuple[str, int],
                      end: tuple[str, int]) -> list[str]:
    """The DML the binlog holds as statements (Query events: binlog_format STATEMENT or MIXED) naming
    `database.table` qualified, first line of each. Their rows are in no rows event."""
    name = re.compile(rf"`?{re.escape(database)}`?\.`?{re.escape(table)}`?(?![\w`])")
    return [line for line in _decode(mariadb, start, end)
            if not line.startswith("#") and _DML.match(line) and name.search(line)]


def _decode(mariadb: MariaDBServer, start: tuple[str, int], end: tuple[str, int]) -> list[str]:
    binary = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    assert binary, "mariadb-binlog is not installed"
    names = sorted((p.name for p in mariadb.datadir.glob("binlog.[0-9]*")), key=file_index)
    files = [n for n in names if file_index(start[0]) <= file_index(n) <= file_index(end[0])]
    assert files and files[0] == start[0], f"binlog {start[0]} not in {names}"
    argv = [binary, "--no-defaults", "--base64-output=decode-rows", "--verbose", f"--start-position={start[1]}"]
    if len(files) == 1:
        argv.append(f"--stop-position={end[1]}")
    out = subprocess.run([*argv, *(str(mariadb.datadir / f) for f in files)], capture_output=True, text=True,
                         errors="replace", check=True).stdout  # other tests' rows may hold any bytes
    return out.splitlines()


def _parse(lines: Iterable[str], database: str, table: str) -> Iterable[RowImage]:
    kind: str | None = None
    images: dict[str, dict[int, str]] = {}
    section = ""

    def emit() -> RowImage | None:
        if kind is None or not images:
            return None
        if kind == "UPDATE":
            return RowImage(kind, images.get("SET", {}), images.get("WHERE", {}))
        return RowImage(kind, images.get("SET") or images.get("WHERE", {}))

    for line in lines:
        head = _HEAD.match(line)
        if head or not line.startswith("###"):
            done = emit()
            if done:
                yield done
            kind, images, section = None, {}, ""
            if head and head.group(2) == database and head.group(3) == table:
                kind = {"INSERT INTO": "INSERT", "UPDATE": "UPDATE", "DELETE FROM": "DELETE"}[head.group(1)]
            continue
        if kind is None:
            continue
        if line.startswith("### SET") or line.startswith("### WHERE"):
            section = line.split()[1]
            images[section] = {}
        else:
            col = _COL.match(line)
            if col and section:
                images[section][int(col.group(1))] = col.group(2).strip("'")
    done = emit()
    if done:
        yield done


def kafka_changes(messages: Iterable[tuple[int, int, FlatMessage]], table: str) -> list[Change]:
    """(type, id, v) of every row in `messages` (partition, offset, message) of `table`, in partition order."""
    out: list[Change] = []
    for _, _, m in sorted(messages, key=lambda x: (x[0], x[1])):
        if m.is_ddl or m.table != table:
            continue
        for row in m.data or []:
            out.append((m.type, int(row["id"] or 0), int(row["v"] or 0)))
    return out


def missing_or_out_of_order(expected: list[Change], observed: list[Change]) -> list[str]:
    """Problems: an expected change absent from Kafka, or a key's expected changes out of binlog order.

    Replays (a change seen again after a restart) are allowed; changes outside `expected` are ignored."""
    per_key: dict[int, list[Change]] = {}
    for change in expected:
        per_key.setdefault(change[1], []).append(change)
    seen: dict[int, list[Change]] = {}
    wanted = set(expected)
    for change in observed:
        if change in wanted:
            seen.setdefault(change[1], []).append(change)
    problems = []
    for key, changes in per_key.items():
        index = {c: i for i, c in enumerate(changes)}
        hi = -1
        for change in seen.get(key, []):
            i = index[change]
            if i > hi + 1:
                problems.append(f"key {key}: {changes[hi + 1]} missing before {change}")
                break
            hi = max(hi, i)
        else:
            if hi != len(changes) - 1:
                problems.append(f"key {key}: {changes[hi + 1:][:3]} missing")
    return problems


def await_in_kafka(broker: Broker, topic: str, table: str, expected: list[Change], timeout_s: float = 60) \
        -> list[tuple[int, int, FlatMessage]]:
    """Every message of `topic`, read until each change in `expected` has been seen (fails on timeout, naming
    the missing changes), and checked: none missing, each key in binlog order, duplicates allowed."""
    want = set(expected)

    def seen(msgs: list[FlatMessage]) -> set[Change]:
        return set(kafka_changes(((0, i, m) for i, m in enumerate(msgs)), table))

    messages = read_messages(broker, topic, lambda msgs: want <= seen(msgs), timeout_s=timeout_s,
                             describe=lambda msgs: f"{len(want - seen(msgs))} of {len(want)} binlog changes "
                                                   f"missing from Kafka, e.g. {sorted(want - seen(msgs))[:10]}")
    assert missing_or_out_of_order(expected, kafka_changes(messages, table)) == []
    return messages
