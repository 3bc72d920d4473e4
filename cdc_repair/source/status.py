"""`capture_status(settings)`: checkpoint vs the server's current binlog position, lag in bytes and seconds.

Used by `cdc-repair status` and the daemon's lag check. Shape:

    {"sources": [{"source", "binlog_file", "binlog_pos", "gtid_set", "event_ts", "updated_at",
                  "server_file", "server_pos", "server_gtid", "lag_bytes", "lag_seconds", "error"}],
     "full_scan_requested": bool}

`lag_bytes` counts binlog bytes between the checkpoint and the server's end (SHOW BINARY LOGS sizes);
`lag_seconds` is 0 when caught up, else now minus the commit time of the last checkpointed transaction.
A server that does not answer gives `error` instead of server fields (status never fails because of it).
"""

from __future__ import annotations

import time
from typing import Any

from cdc_repair.config import Settings
from cdc_repair.errors import CdcRepairError
from cdc_repair.metrics import BINLOG_LAG_BYTES
from cdc_repair.model.position import BinlogPosition, bytes_between


def capture_status(settings: Settings, engine: Any = None) -> dict[str, Any]:
    from cdc_repair.source.binlog_reader import server_binlog
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
            entry["lag_bytes"] = lag_bytes
            BINLOG_LAG_BYTES.labels(cap.server).set(lag_bytes)
            if lag_bytes == 0:
                entry["lag_seconds"] = 0.0
            elif saved.event_ts:
                entry["lag_seconds"] = round(max(0.0, now - saved.event_ts), 3)
        sources.append(entry)
    return {"sources": sources, "full_scan_requested": checkpoints.full_scan_requested(engine)}
