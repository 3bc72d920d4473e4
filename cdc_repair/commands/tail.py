"""`cdc-repair tail`: binlog → Kafka only (the capture stage in the foreground), until SIGINT/SIGTERM.

The first SIGTERM/SIGINT stops gracefully (flush, wait for Kafka acks, save the checkpoint); a second one
exits at once, as for `cdc-repair run` (`runtime/signals.py`).
"""

from __future__ import annotations

import click

from cdc_repair.commands.common import CliContext, fail, pass_ctx
from cdc_repair.errors import CdcRepairError
from cdc_repair.runtime.signals import SignalEvents, install


@click.command("tail")
@click.option("--source", "source", default=None, help="Capture only this server (a capture[].server name).")
@pass_ctx
def command(ctx: CliContext, source: str | None) -> None:
    """Tail the binlog of each capture source into Kafka (Canal FlatMessage), at-least-once, resumable."""
    from cdc_repair.app.tail import tail

    settings = ctx.settings()
    events = SignalEvents()
    restore = install(events, reload=False)
    try:
        tail(settings, source, events)
    except CdcRepairError as exc:
        fail(exc)
    finally:
        restore()
