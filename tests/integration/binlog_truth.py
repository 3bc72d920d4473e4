"""The ground truth for capture fault tests: row changes decoded from the server's binlog files by `mariadb-binlog`.

Independent of the tailer (its own reader, its own decoder): a test compares what reached Kafka with this, never
with the tailer's bookkeeping. Tables are expected as `(id INT PRIMARY KEY, v INT, ...)` with `v` unique per change,
so each change is identified by (type, id, v).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable

from cdc_repair.model.position import file_index
from cdc_repair.sink.flat_message import FlatMessage
from cdc_repair_dev.devservices.mariadb import MariaDBServer

Change = tuple[str, int, int]  # (INSERT|UPDATE|DELETE, id, v)

_HEAD = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`")
_COL = re.compile(r"^###\s+@(\d+)=(\S+)")


def master_position(mariadb: MariaDBServer) -> tuple[str, int]:
    file, pos = mariadb.query("SHOW MASTER STATUS")[0][:2]
    return str(file), int(pos)


def binlog_changes(mariadb: MariaDBServer, database: str, table: str, start: tuple[str, int],
                   end: tuple[str, int]) -> list[Change]:
    """Every row change of `database.table` committed in [start, end), in binlog order."""
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
    return list(_parse(out.splitlines(), database, table))


def _parse(lines: Iterable[str], database: str, table: str) -> Iterable[Change]:
    kind: str | None = None
    image: dict[int, str] = {}
    section = ""

    def emit() -> Change | None:
        if kind is None or not image:
            return None
        return (kind, int(image[1]), int(image[2]))

    for line in lines:
        head = _HEAD.match(line)
        if head or not line.startswith("###"):
            done = emit() if kind else None
            if done:
                yield done
            kind, image, section = None, {}, ""
            if head and head.group(2) == database and head.group(3) == table:
                kind = {"INSERT INTO": "INSERT", "UPDATE": "UPDATE", "DELETE FROM": "DELETE"}[head.group(1)]
            continue
        if kind is None:
            continue
        if line.startswith("### SET"):
            section, image = "SET", {}
        elif line.startswith("### WHERE"):
            section, image = "WHERE", {}
        else:
            col = _COL.match(line)
            if col and (section == "SET" or kind == "DELETE" or section == "WHERE"):
                image[int(col.group(1))] = col.group(2).strip("'")
    done = emit() if kind else None
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
