"""Where a full scan keeps its lock, progress and findings: the state database, or nowhere at all.

The configured CLI and the daemon record every confirmed difference in the ledger and save progress so
`--resume` can continue. `cdc-repair diff` is a one-off, read-only compare (pt-table-sync's habit): it must not
need, let alone write, a state database, so the same scan runs against `ReadOnlyScanStore`, which keeps nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from cdc_repair.errors import TransientError
from cdc_repair.model.verdict import Verdict

if TYPE_CHECKING:  # the state package imports SQLAlchemy: a full scan imports it in the background (`PairLock`)
    from cdc_repair.state.engine import StateEngine
    from cdc_repair.state.scan_progress import Finding, ScanState

log = logging.getLogger(__name__)


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
        from cdc_repair.state import ledger, scan_progress

        self.engine = engine
        self._ledger, self._progress = ledger, scan_progress

    def lock(self, pair: str) -> contextlib.AbstractContextManager[bool]:
        return self._progress.scan_lock(self.engine, pair)

    def resumable(self, pair: str) -> ScanState | None:
        return self._progress.resumable(self.engine, pair)

    def start(self, scan_id: str, pair: str, where: str | None) -> None:
        self._progress.start(self.engine, scan_id, pair, where)

    def save(self, scan_id: str, pair: str, *, last_key: str | None, chunks: int, rows: int, diffs: int) -> None:
        self._progress.save(self.engine, scan_id, pair, last_key=last_key, chunks=chunks, rows=rows, diffs=diffs)

    def finish(self, scan_id: str, pair: str, status: str) -> None:
        self._progress.finish(self.engine, scan_id, pair, status)

    def set_total(self, scan_id: str, pair: str, rows_total: int | None) -> None:
        self._progress.set_total(self.engine, scan_id, pair, rows_total)

    def record(self, scan_id: str, pair: str, verdicts: list[Verdict], mismatched: Sequence[str]) -> None:
        self._ledger.record_verdicts(self.engine, verdicts, "full_scan")
        self._progress.add_findings(self.engine, scan_id, pair, mismatched)

    def findings(self, scan_id: str, pair: str, limit: int) -> tuple[dict[str, int], list[Finding]]:
        return self._progress.findings(self.engine, scan_id, pair, limit)


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


class PairLock:
    """A pair's scan lock, taken in the background, and the store behind it.

    Why in the background: opening the state database (importing SQLAlchemy, connecting) and taking the lock
    cost a few hundred milliseconds that a new scan spends reading its first chunks instead; nothing is written
    before the lock is held (`store()` waits for it), and a scan that finds the lock taken fails with the same
    TransientError, after its first chunk instead of before it."""

    def __init__(self, runner: ThreadPoolExecutor, store: Future[ScanStore], pair: str) -> None:
        self.pair = pair
        self._store = store
        self._held: contextlib.AbstractContextManager[bool] | None = None
        self._future = runner.submit(self._take)

    def _take(self) -> ScanStore:
        store = self._store.result()
        cm = store.lock(self.pair)
        if not cm.__enter__():
            cm.__exit__(None, None, None)
            raise TransientError(f"a full scan of pair '{self.pair}' is already running in another process "
                                 f"(it holds the state server's scan lock); wait for it or stop it")
        self._held = cm
        return store

    def store(self) -> ScanStore:
        """The store, once the lock is held (raises when it is not ours)."""
        return self._future.result()

    def ready(self) -> bool:
        """Is the lock held (the store usable without waiting)?"""
        return self._future.done() and self._future.exception() is None

    def check(self) -> None:
        """Raise now if the lock turned out to be another scanner's or the store cannot open (never waits)."""
        if self._future.done():
            self._future.result()

    def release(self) -> None:
        try:
            self._future.result()
        except BaseException:  # never held: nothing to release (the error reached the scan through `store`)
            return
        if self._held is not None:
            self._held.__exit__(None, None, None)
            self._held = None


class LatestWriter:
    """A background thread writing the latest (scan_id, state) handed to it; older pending states are skipped.

    Why: saving progress after every chunk is a state-server round trip; in the background it overlaps the next
    chunk's queries, and a crash loses at most the chunk being written (the resume point only moves forward)."""

    def __init__(self, write: Callable[[str, Any], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: tuple[str, Any] | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scan-progress", daemon=True)
        self._thread.start()

    def put(self, scan_id: str, state: Any) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._pending = (scan_id, state)
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            while (self._pending is not None or self._busy) and self._error is None and self._thread.is_alive():
                self._cond.wait(0.1)
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                item, self._pending = self._pending, None
                self._busy = True
            try:
                self._write(*item)
            except BaseException as exc:  # surfaced to the scan on its next put/flush
                log.exception("saving full-scan progress failed")
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
