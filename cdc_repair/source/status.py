"""`capture_status(settings)`: checkpoint vs the server's current binlog position, lag in bytes and seconds.

Used by `cdc-repair status` and the daemon's lag check. Shape:

    {"sources": [{"source", "binlog_file", "binlog_pos", "gtid_set", "event_ts", "updated_at",
                  "server_file", "server_pos", "server_gtid", "lag_bytes", "lag_seconds", "error"}],
     "full_scan_requested": bool}

`lag_bytes` counts binlog bytes between the checkpoint and the server's end (SHOW BINARY LOGS sizes);
`lag_seconds` is 0 when caught up, else now minus the commit time of the last checkpointed transaction.
Caught up includes a checkpoint followed only by transactions capture does not publish (tables it does not
include, e.g. its own checkpoint writes when the state schema is on the captured server: capture does not save a
checkpoint for those, so they would otherwise read as lag forever): both lags are then 0.
A server that does not answer gives `error` instead of server fields (status never fails because of it).
"""

from __future__ import annotations

import re
import time
from typing import Any

from cdc_repair.config import CaptureConfig, Settings
from cdc_repair.db import mysql
from cdc_repair.db.sql import Statement
from cdc_repair.errors import CdcRepairError
from cdc_repair.metrics import BINLOG_LAG_BYTES
from cdc_repair.model.position import BinlogPosition, bytes_between
from cdc_repair.source.filters import TableMatcher, own_state_exclude

PEEK_BYTES = 1 << 20  # look at what follows the checkpoint only when it is this close to the server's end
PEEK_EVENTS = 2000
_TABLE_MAP = re.compile(r"\((.+?)\.(.+)\)\s*$")
_NOT_DDL = ("BEGIN", "COMMIT", "ROLLBACK", "XA ", "SAVEPOINT", "RELEASE SAVEPOINT", "# ")


def capture_status(settings: Settings, engine: Any = None) -> dict[str, Any]:
    from cdc_repair.source.server_binlog import server_binlog
    from cdc_repair.state import checkpoints
    from cdc_repair.state.engine import state_engine

    engine = engine or state_engine(settings.state.dsn)
    now = time.time()
    sources: list[dict[str, Any]] = []
    for cap in settings.capture:
        saved = checkpoints.load_checkpoint(engine, cap.server)
        entry: dict[str, Any] = {
            "source": cap.server, "binlog_file": saved.binlog_file if saved else None,
            "binlog_pos": saved.binlog_pos if saved else None, "gtid_set": saved.gtid_set if saved else None,
            "event_ts": saved.event_ts if saved else None, "updated_at": saved.updated_at if saved else None,
            "server_file": None, "server_pos": None, "server_gtid": None, "lag_bytes": None, "lag_seconds": None,
            "error": None,
        }
        try:
            server = server_binlog(settings.server_dsn(cap.server))
        except CdcRepairError as exc:
            entry["error"] = str(exc)
            sources.append(entry)
            continue
        cur = server.current
        entry.update(server_file=cur.file, server_pos=cur.pos, server_gtid=cur.gtid_set)
        if saved is not None:
            at = BinlogPosition(saved.binlog_file, saved.binlog_pos)
            lag_bytes = bytes_between(at, BinlogPosition(server.current.file, server.current.pos), server.files)
            if 0 < lag_bytes <= PEEK_BYTES and at.file == cur.file and \
                    nothing_to_publish(settings, cap, at, cur.pos):
                lag_bytes = 0
            entry["lag_bytes"] = lag_bytes
            BINLOG_LAG_BYTES.labels(cap.server).set(lag_bytes)
            if lag_bytes == 0:
                entry["lag_seconds"] = 0.0
            elif saved.event_ts:
                entry["lag_seconds"] = round(max(0.0, now - saved.event_ts), 3)
        sources.append(entry)
    return {"sources": sources, "full_scan_requested": checkpoints.full_scan_requested(engine)}


def nothing_to_publish(settings: Settings, cap: CaptureConfig, at: BinlogPosition, end_pos: int) -> bool:
    """True when the binlog from `at` to `end_pos` (same file) holds no row of an included table and no DDL
    (`SHOW BINLOG EVENTS`, which the capture user may run). Any doubt (too many events, an error) is False."""
    server = settings.server_dsn(cap.server)
    matcher = TableMatcher(list(cap.include), [*cap.exclude, *own_state_exclude(settings.state.dsn, server)])
    try:
        conn = mysql.connect(server.with_database(None), timeout_s=10)
    except CdcRepairError:
        return False
    try:
        rows = mysql.fetch_all(conn, Statement(f"SHOW BINLOG EVENTS IN %s FROM %s LIMIT {PEEK_EVENTS}",
                                               (at.file, at.pos)))
    except mysql.DriverError:  # an old server or a missing privilege: report the plain byte lag
        return False
    finally:
        conn.close()
    return events_publish_nothing([(str(r[2]), int(r[4]), str(r[5] or "")) for r in rows], end_pos, matcher)


def events_publish_nothing(events: list[tuple[str, int, str]], end_pos: int, matcher: TableMatcher) -> bool:
    """`events` as (Event_type, End_log_pos, Info) from SHOW BINLOG EVENTS (pure)."""
    reached = False
    for kind, end, info in events:
        if end > end_pos:
            reached = True
            break
        if kind == "Table_map":
            found = _TABLE_MAP.search(info)
            if found is None or matcher(found.group(1), found.group(2)):
                return False
        elif kind == "Query" and not info.lstrip().upper().startswith(_NOT_DDL):
            return False
        if end == end_pos:
            reached = True
            break
    return reached
