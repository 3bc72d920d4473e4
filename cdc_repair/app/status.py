"""The `status` use case: the status document of `cdc-repair status` (the daemon serves the same at /api/status)."""

from __future__ import annotations

from typing import Any

from cdc_repair.app.state import open_state
from cdc_repair.config import Settings
from cdc_repair.runtime.status import build_status


def status(settings: Settings) -> dict[str, Any]:
    """Checkpoint and lag, ledger counts, recent repairs, last job runs, leader (no daemon: `leader` is None)."""
    engine = open_state(settings, "reach")
    try:
        return build_status(settings, engine)
    finally:
        engine.dispose()
