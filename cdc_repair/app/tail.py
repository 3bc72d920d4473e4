"""The `tail` use case: the capture stage in the foreground, one tailer per capture source, until stopped.

The same `Tailer` the daemon supervises, without the supervisor: here a terminal error (a server setting, a
lost binlog) stops every tailer and is raised to the caller, who reports it; a transient one is retried by
the tailer itself.
"""

from __future__ import annotations

import logging
import threading

from cdc_repair.config import Settings
from cdc_repair.errors import CdcRepairError, TerminalError
from cdc_repair.runtime.signals import SignalEvents
from cdc_repair.source.tailer import Tailer

log = logging.getLogger(__name__)


def tail(settings: Settings, source: str | None, events: SignalEvents) -> None:
    """Tail every capture source (or only `source`) until `events.stop` is set (SIGTERM/SIGINT), then flush,
    wait for the broker's acks and save each checkpoint. Raises the first TerminalError of any tailer."""
    captures = [c for c in settings.capture if source is None or c.server == source]
    if not captures:
        raise CdcRepairError(f"no capture configured{' for ' + source if source else ''} "
                             f"(add a capture: entry to the config)")
    errors: list[TerminalError] = []

    def run(tailer: Tailer) -> None:
        try:
            tailer.run(events.stop)
        except TerminalError as exc:
            errors.append(exc)
            events.stop.set()
            events.wake.set()

    tailers = [Tailer(settings, c) for c in captures]
    threads = [threading.Thread(target=run, args=(t,), name=f"tail-{t.source}", daemon=True) for t in tailers]
    for thread in threads:
        thread.start()
    _wait(threads, events)
    if errors:
        raise errors[0]


def _wait(threads: list[threading.Thread], events: SignalEvents) -> None:
    """Join the tailers; say once why they stop when a signal asked for it (handlers themselves never log)."""
    told = False
    while any(t.is_alive() for t in threads):
        events.wake.wait(0.5)
        if events.received and not told:
            told = True
            log.info("signal %d: stopping the tailer (flush, wait for Kafka acks, save the checkpoint)",
                     events.received[-1])
        for thread in threads:
            thread.join(0.1 if events.stop.is_set() else 0)
