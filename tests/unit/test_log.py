"""Log lines never carry a DSN password, in text or JSON format, in messages or tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cdc_repair.log import JsonFormatter, MaskingFilter, TextFormatter


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_passwords_are_masked_in_messages_and_tracebacks(formatter: logging.Formatter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(MaskingFilter())
    log = logging.getLogger(f"test-mask-{type(formatter).__name__}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.warning("connecting to %s", "mysql://app:topsecret@db:3306/x")
    try:
        raise RuntimeError("lost mysql://app:topsecret@db:3306/x")
    except RuntimeError:
        log.exception("failed")
    out = stream.getvalue()
    assert "topsecret" not in out
    assert "connecting to mysql://app:***@db:3306/x" in out
    assert "RuntimeError: lost mysql://app:***@db:3306/x" in out


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("cdc", logging.INFO, __file__, 1, "checkpoint saved", None, None)
    record.stage = "tailer"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "checkpoint saved" and doc["stage"] == "tailer" and doc["level"] == "INFO"
