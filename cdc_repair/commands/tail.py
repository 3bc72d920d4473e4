"""`cdc-repair tail`: binlog → Kafka only (the capture stage in the foreground), until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from cdc_repair.commands.common import CliContext, fail, pass_ctx
from cdc_repair.errors import TerminalError

log = logging.getLogger(__name__)


@click.command("tail")
@click.option("--source", "source", default=None, help="Capture only this server (a capture[].server name).")
@pass_ctx
def command(ctx: CliContext, source: str | None) -> None:
    """Tail the binlog of each capture source into Kafka (Canal FlatMessage), at-least-once, resumable."""
    from cdc_repair.source.tailer import Tailer

    settings = ctx.settings()
    captures = [c for c in settings.capture if source is None or c.server == source]
    if not captures:
        fail(f"no capture configured{' for ' + source if source else ''} (add a capture: entry to the config)")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the tailer (flush, wait for Kafka acks, save the checkpoint)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    errors: list[TerminalError] = []

    def run(tailer: Tailer) -> None:
        try:
            tailer.run(stop)
        except TerminalError as exc:
            errors.append(exc)
            stop.set()

    tailers = [Tailer(settings, c) for c in captures]
    threads = [threading.Thread(target=run, args=(t,), name=f"tail-{t.source}", daemon=True) for t in tailers[1:]]
    for t in threads:
        t.start()
    run(tailers[0])
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    if errors:
        fail(errors[0])
