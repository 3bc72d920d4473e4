"""The one contract every long-running stage implements (capture, validate, repair, the scheduler).

Why a base class and not duck typing: the daemon (`runtime/`) must run any stage the same way, and a stage
must not have to know the daemon. So the contract lives here, in the foundation, where `source/`,
`validate/` and `repair/` may import it, and the supervisor calls every method without `getattr` probes.

- **start**: the composition root (`app/`) builds a fresh object for every attempt (`StageSpec.factory`);
  the supervisor then calls `run` on a thread of its own. A stage opens its connections inside `run`.
- **run**: `run(stop)` blocks until `stop` is set, then releases what it holds and returns. An exception ends
  the attempt (the supervisor logs, counts and restarts it after a backoff). A stage that works in passes
  offers its one pass as a public method too (e.g. `RepairWorker.run_due`), so a command can run one pass.
- **stop**: set the event given to `run`; the supervisor joins the thread within a bound. No `stop()` method:
  one event per attempt cannot be missed or called twice.
- **health**: a small dict copied into the status document; `"ready": False` makes `/readyz` fail.
- **update_settings**: apply a live reload of the stage's sections in place and return True; the default
  returns False, and the supervisor restarts the stage with the new settings instead.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

from cdc_repair.config import Settings


class Stage(ABC):
    """A supervised stage (see the module docstring for the contract)."""

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set; then release what the stage holds and return."""

    def health(self) -> dict[str, Any]:
        """What the status page shows about this stage (default: nothing)."""
        return {}

    def update_settings(self, settings: Settings) -> bool:
        """Apply reloaded settings in place; False (the default) asks the supervisor for a restart instead."""
        return False
