"""`cdc-repair demo`: the embedded default, end to end (see `cdc_repair_dev/demo.py`).

Exit 0 when the final full validation found zero differences (converged), 2 when differences remain, 1 on error.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from cdc_repair.commands.common import (
    EXIT_DIFFERENCES,
    EXIT_OK,
    CliContext,
    emit_json,
    fail,
    pass_ctx,
    require_dev_tools,
)
from cdc_repair.errors import CdcRepairError


@click.command("demo")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of workload.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Workload operations per second.")
@click.option("--fail-share", type=float, default=0.1, show_default=True,
              help="Share of publishes that fail between the two writes.")
@click.option("--corrupt-share", type=float, default=0.03, show_default=True,
              help="Share of operations that corrupt or delete online rows directly.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--dir", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Keep the services' data and logs here (default: a temp dir removed at the end).")
@pass_ctx
def command(ctx: CliContext, duration: float, rate: float, fail_share: float, corrupt_share: float, seed: int,
            data_dir: Path | None) -> None:
    """Embedded MariaDB + broker, the whole pipeline in-process, a webook workload, and proof of convergence."""
    require_dev_tools("demo")
    from cdc_repair_dev.demo import DemoOptions, run_demo, summary_table

    opts = DemoOptions(config_path=ctx.config_path, duration_s=duration, rate_per_s=rate,
                       publish_fail_share=fail_share, corrupt_share=corrupt_share, seed=seed, data_dir=data_dir)
    console = Console(stderr=ctx.json_output)
    try:
        result = run_demo(opts, console)
    except CdcRepairError as exc:
        fail(exc)
    if ctx.json_output:
        emit_json({"converged": result.converged, "differences": result.differences,
                   "validations": result.validations, "workload": result.workload, "pipeline": result.pipeline})
    else:
        console.print()
        console.print(summary_table(result))
        if result.status_url:
            console.print(f"(the status page {result.status_url} was served while the demo ran)")
    raise SystemExit(EXIT_OK if result.converged else EXIT_DIFFERENCES)
