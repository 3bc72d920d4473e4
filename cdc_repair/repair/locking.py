"""The isolation of repair and rollback write transactions: READ COMMITTED, so they cannot deadlock each other.

Why: under REPEATABLE READ, `SELECT … FOR UPDATE` of a key that is absent takes a gap lock on the gap where the
key would be. Gap locks never conflict with each other, but an INSERT into the gap waits for every *other*
transaction's gap lock there. Two batches of absent keys in the same gap (10,000 contiguous keys missing online,
two writer threads) therefore each hold the gap and each wait for the other to release it: a deadlock on every
pair of concurrent insert batches, whatever the key order. Under READ COMMITTED InnoDB takes no gap locks for
reads, only record locks on rows that exist. Batches hold disjoint keys, so the records they lock are disjoint
and nothing they do can wait for another batch.

The guard stays exact: rows that exist are locked and compared as before; an absent key is not locked, so a
writer may insert it between the guard's read and the repair's INSERT. The INSERT then fails with a duplicate
key, the batch rolls back and is retried row by row, where the fresh locked read sees the new row and the
guard refuses to touch it (`guard_failed`, re-checked next round). Nothing is overwritten.

READ COMMITTED needs row-based binary logging: on a server that logs statements (`log_bin=ON`,
`binlog_format=STATEMENT`) InnoDB refuses its writes, so there the session keeps REPEATABLE READ (and a warning
says that concurrent insert batches may deadlock; they are retried row by row).
"""

from __future__ import annotations

import logging

from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement

log = logging.getLogger(__name__)

READ_COMMITTED = "READ-COMMITTED"
REPEATABLE_READ = "REPEATABLE-READ"


def use_read_committed(conn: mysql.Connection, server: str) -> str:
    """Set the session's isolation for repair writes; returns the level in force."""
    row = mysql.fetch_one(conn, Statement("SELECT @@log_bin, @@binlog_format"))
    if row is not None and str(row[0]) in ("1", "ON") and str(row[1]).upper() == "STATEMENT":
        log.warning("server '%s' logs statements (binlog_format=STATEMENT): repair writes stay REPEATABLE READ, "
                    "so concurrent insert batches can deadlock (they are retried row by row); set "
                    "binlog_format=ROW or MIXED, or repair.threads: 1", server)
        return REPEATABLE_READ
    mysql.execute(conn, Statement("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"))
    return READ_COMMITTED
