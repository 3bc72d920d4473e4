"""Opening the state database for a use case: any failure becomes one line naming it (never a traceback)."""

from __future__ import annotations

from cdc_repair.config import Settings
from cdc_repair.errors import CdcRepairError
from cdc_repair.state.engine import StateEngine, state_engine


def open_state(settings: Settings, verb: str = "reach") -> StateEngine:
    """The state engine (schema created when missing). A server that cannot be reached is a CdcRepairError
    `cannot <verb> the state database DSN: reason (is it running? check state.dsn)`."""
    try:
        return state_engine(settings.state.dsn)
    except CdcRepairError:
        raise
    except Exception as exc:  # the driver's or SQLAlchemy's own error: keep its first line only
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CdcRepairError(f"cannot {verb} the state database {settings.state.dsn.masked()}: {reason} "
                             f"(is it running? check state.dsn)") from None
