"""What the server says about its binlog now (through db/mysql.py): position, files, MariaDB or MySQL."""

from __future__ import annotations

from dataclasses import dataclass

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.sql import Statement
from cdc_repair.errors import ServerSettingsError
from cdc_repair.model.position import BinlogPosition


@dataclass(frozen=True, slots=True)
class ServerBinlog:
    """What the server says about its binlog now."""

    current: BinlogPosition
    files: dict[str, int]  # SHOW BINARY LOGS: name → size, oldest first
    is_mariadb: bool


def server_binlog(dsn: Dsn) -> ServerBinlog:
    conn = mysql.connect(dsn.with_database(None), timeout_s=10)
    try:
        version = str(mysql.fetch_all(conn, Statement("SELECT VERSION()"))[0][0])
        is_mariadb = "mariadb" in version.lower()
        status = None
        for sql in ("SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"):
            try:
                rows = mysql.fetch_all(conn, Statement(sql))
            except Exception:  # syntax differs by server version; try the other spelling
                continue
            status = rows[0] if rows else None
            break
        if status is None:
            raise ServerSettingsError(f"{dsn.masked()}: binary logging is off (start the server with --log-bin)")
        files = {str(r[0]): int(r[1]) for r in mysql.fetch_all(conn, Statement("SHOW BINARY LOGS"))}
        gtid_sql = "SELECT @@GLOBAL.gtid_binlog_pos" if is_mariadb else "SELECT @@GLOBAL.gtid_executed"
        try:
            gtid = str(mysql.fetch_all(conn, Statement(gtid_sql))[0][0] or "").replace("\n", "") or None
        except Exception:  # GTID variables may be absent (old servers): GTID is informative only
            gtid = None
        return ServerBinlog(BinlogPosition(str(status[0]), int(status[1]), gtid), files, is_mariadb)
    finally:
        conn.close()
