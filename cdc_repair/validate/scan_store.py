"""Where a full scan keeps its lock, progress and findings: the state database, or nowhere at all.

The configured CLI and the daemon record every confirmed difference in the ledger and save progress so
`--resume` can continue. `cdc-repair diff` is a one-off, read-only compare (pt-table-sync's habit): it must not
need, let alone write, a state database, so the same scan runs against `ReadOnlyScanStore`, which keeps nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol

from cdc_repair.model.verdict import Verdict
from cdc_repair.state import ledger, scan_progress
from cdc_repair.state.engine import StateEngine
from cdc_repair.state.scan_progress import Finding, ScanState


class ScanStore(Protocol):
    def lock(self, pair: str) -> contextlib.AbstractContextManager[bool]: ...
    def resumable(self, pair: str) -> ScanState | None: ...
    def start(self, scan_id: str, pair: str, where: str | None) -> None: ...
    def save(self, scan_id: str, pair: str, *, last_key: str | None, chunks: int, rows: int, diffs: int) -> None: ...
    def finish(self, scan_id: str, pair: str, status: str) -> None: ...
    def set_total(self, scan_id: str, pair: str, rows_total: int | None) -> None: ...
    def record(self, scan_id: str, pair: str, verdicts: list[Verdict], mismatched: Sequence[str]) -> None: ...
    def findings(self, scan_id: str, pair: str, limit: int) -> tuple[dict[str, int], list[Finding]]: ...


class LedgerScanStore:
    """Progress in `scan_progress`, verdicts in the ledger (detected_by `full_scan`), the scan lock on the server."""

    def __init__(self, engine: StateEngine) -> None:
        self.engine = engine

    def lock(self, pair: str) -> contextlib.AbstractContextManager[bool]:
        return scan_progress.scan_lock(self.engine, pair)

    def resumable(self, pair: str) -> ScanState | None:
        return scan_progress.resumable(self.engine, pair)

    def start(self, scan_id: str, pair: str, where: str | None) -> None:
        scan_progress.start(self.engine, scan_id, pair, where)

    def save(self, scan_id: str, pair: str, *, last_key: str | None, chunks: int, rows: int, diffs: int) -> None:
        scan_progress.save(self.engine, scan_id, pair, last_key=last_key, chunks=chunks, rows=rows, diffs=diffs)

    def finish(self, scan_id: str, pair: str, status: str) -> None:
        scan_progress.finish(self.engine, scan_id, pair, status)

    def set_total(self, scan_id: str, pair: str, rows_total: int | None) -> None:
        scan_progress.set_total(self.engine, scan_id, pair, rows_total)

    def record(self, scan_id: str, pair: str, verdicts: list[Verdict], mismatched: Sequence[str]) -> None:
        ledger.record_verdicts(self.engine, verdicts, "full_scan")
        scan_progress.add_findings(self.engine, scan_id, pair, mismatched)

    def findings(self, scan_id: str, pair: str, limit: int) -> tuple[dict[str, int], list[Finding]]:
        return scan_progress.findings(self.engine, scan_id, pair, limit)


class ReadOnlyScanStore:
    """Keeps nothing: no lock, no progress, no ledger. The scan's own result is the only record."""

    @contextlib.contextmanager
    def _free(self) -> Iterator[bool]:
        yield True

    def lock(self, pair: str) -> contextlib.AbstractContextManager[bool]:
        return self._free()

    def resumable(self, pair: str) -> ScanState | None:
        return None

    def start(self, scan_id: str, pair: str, where: str | None) -> None:
        return None

    def save(self, scan_id: str, pair: str, *, last_key: str | None, chunks: int, rows: int, diffs: int) -> None:
        return None

    def finish(self, scan_id: str, pair: str, status: str) -> None:
        return None

    def set_total(self, scan_id: str, pair: str, rows_total: int | None) -> None:
        return None

    def record(self, scan_id: str, pair: str, verdicts: list[Verdict], mismatched: Sequence[str]) -> None:
        return None

    def findings(self, scan_id: str, pair: str, limit: int) -> tuple[dict[str, int], list[Finding]]:
        return {}, []
