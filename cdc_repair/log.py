"""Logging setup: text on a terminal, JSON lines otherwise; every record passes through the DSN mask."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from cdc_repair.db.dsn import mask

_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class MaskingFilter(logging.Filter):
    """Rewrites `scheme://user:password@` in every message so no password reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS})
        if record.exc_info:
            doc["exc"] = mask(self.formatException(record.exc_info))
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatException(self, ei: Any) -> str:
        return mask(super().formatException(ei))


def setup_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure the root logger on stderr (stdout is reserved for command output, e.g. --json)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
