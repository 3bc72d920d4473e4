"""Signals → events. Handlers only set events (no logging, no I/O in a handler); the main loop acts on them.

First SIGTERM/SIGINT: graceful shutdown (stop intake, flush, commit, checkpoint, release the lock).
Second one: the default action, for an operator who does not want to wait.
SIGHUP: reload the config file (only where the caller reloads: `install(events, reload=False)` leaves it alone).
Every foreground command that runs a stage (`run`, `tail`, the demo) installs these, so they all stop alike.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class SignalEvents:
    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # set on any signal: wakes the main loop
    received: list[int] = field(default_factory=list)


def install(events: SignalEvents, *, reload: bool = True) -> Callable[[], None]:
    """Install the handlers (main thread only); returns a function restoring the previous ones."""
    previous: dict[int, object] = {}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        events.received.append(signum)
        if events.stop.is_set():  # second signal: do what the signal would have done
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        events.stop.set()
        events.wake.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        events.received.append(signum)
        events.reload.set()
        events.wake.set()

    handlers = [(signal.SIGTERM, on_stop), (signal.SIGINT, on_stop)] + ([(signal.SIGHUP, on_hup)] if reload else [])
    for signum, handler in handlers:
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    return restore
