"""What a MySQL server must provide to be captured (binlog settings) and used (grants), with the fix named.

Shared by `preflight` (`check-config --connect`) and the capture stage's start (`source/server_check.py`), so it sits
below both: the tailer may not import preflight, which sits above the stages. The rules are pure;
`fetch_grants` is the one read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement

REQUIRED_BINLOG = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<obj>\S+) TO ", re.IGNORECASE)


def binlog_problems(path: str, variables: Mapping[str, str]) -> list[str]:
    """What keeps this server from being captured, with the my.cnf line that fixes it."""
    if variables.get("log_bin", "OFF").upper() not in ("ON", "1"):
        return [f"{path}: binary logging is off (start the server with log_bin=ON / --log-bin)"]
    problems = []
    for name, want in REQUIRED_BINLOG.items():
        got = variables.get(name, "(unset)").upper()
        if got != want:
            problems.append(f"{path}: {name} is {got}, must be {want} "
                            f"(SET GLOBAL {name}='{want}' and put {name}={want} in my.cnf)")
    return problems


def parse_grants(lines: Iterable[str]) -> dict[str, set[str]]:
    """`SHOW GRANTS` lines → {object: privileges}; object is `*.*`, `db.*` or `db.table` without backticks."""
    grants: dict[str, set[str]] = {}
    for line in lines:
        m = _GRANT.match(line)
        if not m:
            continue
        obj = m["obj"].replace("`", "")
        privs = {p.strip().upper() for p in re.sub(r"\([^)]*\)", "", m["privs"]).split(",")}
        if "ALL PRIVILEGES" in privs or "ALL" in privs:
            privs |= {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "REPLICATION SLAVE", "REPLICATION CLIENT",
                      "BINLOG MONITOR", "REPLICATION SLAVE ADMIN", "PROCESS"}
        grants.setdefault(obj, set()).update(privs)
    return grants


def has_privilege(grants: Mapping[str, set[str]], privilege: str, table: str | None = None) -> bool:
    objects = ["*.*"]
    if table:
        schema = table.split(".")[0]
        objects += [f"{schema}.*", table]
    return any(privilege in grants.get(obj, set()) for obj in objects)


def grant_problems(path: str, grants: Mapping[str, set[str]], *, capture: bool, reads: list[str],
                   writes: list[str]) -> list[str]:
    """Least privilege: replication for capture, SELECT on read tables, INSERT/UPDATE/DELETE on written ones."""
    problems = []
    if capture:
        if not has_privilege(grants, "REPLICATION SLAVE"):
            problems.append(f"{path}: missing REPLICATION SLAVE (GRANT REPLICATION SLAVE ON *.* TO the user)")
        if not (has_privilege(grants, "REPLICATION CLIENT") or has_privilege(grants, "BINLOG MONITOR")):
            problems.append(f"{path}: missing REPLICATION CLIENT / BINLOG MONITOR "
                            f"(GRANT REPLICATION CLIENT ON *.* TO the user)")
    for table in reads:
        if not has_privilege(grants, "SELECT", table):
            problems.append(f"{path}: missing SELECT on {table} (GRANT SELECT ON {table} TO the user)")
    for table in writes:
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            if not has_privilege(grants, priv, table):
                problems.append(f"{path}: missing {priv} on {table} (GRANT {priv} ON {table} TO the user)")
    return problems


def fetch_grants(conn: mysql.Connection) -> list[str]:
    return [str(r[0]) for r in mysql.fetch_all(conn, Statement("SHOW GRANTS FOR CURRENT_USER()"))]
