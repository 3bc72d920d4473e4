"""The capture stage's own retry loop: transient trouble is logged, counted and retried with backoff.

Why inside the stage, although the daemon's supervisor also restarts stages: a capture session keeps state
worth keeping across a lost connection (the last acknowledged transaction boundary, the producer when it did
not fail, the state engine), so it resumes within the process from that boundary; the supervisor only sees
terminal errors (and crashes), for which a restart from the saved checkpoint is right. `cdc-repair tail`
has no supervisor at all, and relies on this loop the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cdc_repair import metrics
from cdc_repair.errors import TerminalError, TransientError
from cdc_repair.source.readiness import Readiness

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0


def run_with_retries(session: Callable[[threading.Event], None], stop: threading.Event, *, source: str,
                     readiness: Readiness, resume_from: Callable[[], object]) -> None:
    """Run `session(stop)` until `stop` is set: a `TerminalError` propagates, anything else is retried after
    1 s, 2 s, 4 s ... 30 s (from 1 s again once a session had the stream running)."""
    delay = FIRST_DELAY_S
    while not stop.is_set():
        try:
            session(stop)
            delay = FIRST_DELAY_S
        except TerminalError:
            raise
        except Exception as exc:  # transient: log, count, back off, resume
            if readiness.ready.is_set():  # the stream had been running: a new incident, back off from 1 s
                delay = FIRST_DELAY_S
            kind = type(exc).__name__
            metrics.ERRORS.labels("capture", kind).inc()
            if isinstance(exc, TransientError):
                log.warning("capture %s: %s; retrying in %.0fs from %s", source, exc, delay, resume_from())
            else:
                log.exception("capture %s failed; retrying in %.0fs", source, delay)
            readiness.failed(f"{kind}: {exc}")
            if stop.wait(delay):
                break
            delay = min(delay * 2, MAX_DELAY_S)
