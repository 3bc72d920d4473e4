"""Before each capture session: the server settings and grants capture needs (rules in db/server_checks.py)."""

from __future__ import annotations

from cdc_repair.db import mysql
from cdc_repair.db.dsn import Dsn
from cdc_repair.db.server_checks import REQUIRED_BINLOG, binlog_problems, fetch_grants, grant_problems, parse_grants
from cdc_repair.db.sql import Statement
from cdc_repair.errors import ServerSettingsError


def check_capture_server(dsn: Dsn, source: str) -> None:
    """Raise `ServerSettingsError` with every problem found (each naming its fix), else return."""
    conn = mysql.connect(dsn.with_database(None), timeout_s=10)
    try:
        variables = mysql.fetch_variables(conn, ["log_bin", *REQUIRED_BINLOG, "log_bin_compress",
                                                 "binlog_transaction_compression", "binlog_row_value_options"])
        path = f"servers.{source}"
        problems = binlog_problems(path, variables)
        if variables.get("log_bin_compress", "OFF").upper() in ("ON", "1"):
            problems.append(f"{path}: log_bin_compress is ON: compressed rows events cannot be captured "
                            f"(SET GLOBAL log_bin_compress=OFF and put log_bin_compress=OFF in my.cnf)")
        if variables.get("binlog_transaction_compression", "OFF").upper() in ("ON", "1"):
            problems.append(f"{path}: binlog_transaction_compression is ON: compressed transactions cannot be "
                            f"captured (SET GLOBAL binlog_transaction_compression=OFF and put it in my.cnf)")
        if "PARTIAL_JSON" in variables.get("binlog_row_value_options", "").upper():
            problems.append(f"{path}: binlog_row_value_options is PARTIAL_JSON: capture needs full JSON values "
                            f"(SET GLOBAL binlog_row_value_options='' and remove it from my.cnf)")
        problems += grant_problems(path, parse_grants(fetch_grants(conn)), capture=True, reads=[], writes=[])
        mysql.fetch_all(conn, Statement("SELECT 1"))
    finally:
        conn.close()
    if problems:
        raise ServerSettingsError("; ".join(problems))
