"""Where a tailer starts (pure): saved checkpoint, configured start, and what the server still has.

* With a checkpoint: resume exactly there if its binlog file still exists; otherwise the binlog was purged:
  `on_purged: fail` raises `BinlogPurgedError`; `resume_and_full_validate` starts at the server's current
  position and reports the gap (the caller records a full-scan request).
* Without one: `current` (the server's position now), `earliest` (oldest binlog, offset 4), a given
  `{file, pos}`, or a `{timestamp}` (read from the earliest binlog, skipping events before it).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_repair.config import CaptureConfig, StartPosition
from cdc_repair.errors import BinlogPurgedError, ConfigError
from cdc_repair.model.position import BinlogPosition, file_index

BINLOG_FIRST_EVENT = 4


@dataclass(frozen=True, slots=True)
class StartDecision:
    position: BinlogPosition
    skip_to_timestamp: float | None = None
    purged_reason: str | None = None  # set when the checkpoint was purged and we resumed at the current position
    origin: str = "checkpoint"  # checkpoint | current | earliest | position | timestamp | purged


def purged_reason(saved: BinlogPosition, files: dict[str, int]) -> str | None:
    """Why `saved` cannot be resumed from (its file is gone, or it points past the file's end), else None."""
    if saved.file not in files:
        oldest = min(files, key=file_index) if files else "(none)"
        return f"checkpoint {saved} points into a purged binlog (oldest on the server: {oldest})"
    if saved.pos > files[saved.file]:
        return f"checkpoint {saved} is past the end of {saved.file} ({files[saved.file]} bytes): binlog was reset"
    return None


def resolve_start(saved: BinlogPosition | None, capture: CaptureConfig, current: BinlogPosition,
                  files: dict[str, int]) -> StartDecision:
    if saved is not None:
        reason = purged_reason(saved, files)
        if reason is None:
            return StartDecision(saved)
        if capture.on_purged == "fail":
            raise BinlogPurgedError(f"capture {capture.server}: {reason}; data in the gap was never captured. "
                                    f"Set capture on_purged: resume_and_full_validate to resume at the current "
                                    f"position and run a full validation")
        return StartDecision(current, purged_reason=reason, origin="purged")
    start = capture.start
    if start == "current":
        return StartDecision(current, origin="current")
    earliest = BinlogPosition(min(files, key=file_index), BINLOG_FIRST_EVENT) if files else current
    if start == "earliest":
        return StartDecision(earliest, origin="earliest")
    assert isinstance(start, StartPosition)
    if start.file:
        if start.file not in files:
            raise ConfigError([f"capture.start.file: binlog {start.file} is not on the server "
                               f"(SHOW BINARY LOGS lists {', '.join(files) or 'none'})"])
        return StartDecision(BinlogPosition(start.file, start.pos or BINLOG_FIRST_EVENT), origin="position")
    if start.timestamp is not None:
        return StartDecision(earliest, skip_to_timestamp=start.timestamp, origin="timestamp")
    raise ConfigError(["capture.start: give file (and pos) or timestamp; starting at a GTID is not supported "
                       "(use the file/pos from SHOW BINLOG EVENTS, or 'current' / 'earliest')"])
