"""The composition root's own logic with stand-in stages (no servers): the foreground tail and the one
claim → execute → finish loop shared by the daemon's worker and `repair --execute`."""

from __future__ import annotations

import signal
import threading
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from cdc_repair.config import settings_from_mapping
from cdc_repair.errors import CdcRepairError, TerminalError
from cdc_repair.model.keys import pk_string
from cdc_repair.repair.repairer import KeyResult, WorkItem
from cdc_repair.runtime.signals import SignalEvents, install

RAW = {"servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}, "b": {"dsn": "mysql://u:p@127.0.0.2:1/"}},
       "state": {"dsn": "mysql://u:p@127.0.0.1:1/s"}, "kafka": {"bootstrap_servers": ["x:1"]},
       "capture": [{"server": "a"}, {"server": "b", "server_id": 7}],
       "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"},
                  "target": {"server": "b", "table": "d.u"}}]}


class FakeTailer:
    """Source `a` fails terminally at once; any other runs until stopped."""

    stopped: ClassVar[list[str]] = []

    def __init__(self, settings: Any, capture: Any) -> None:
        self.source = capture.server

    def run(self, stop: threading.Event) -> None:
        if self.source == "a":
            raise TerminalError("binlog_row_image is MINIMAL on a (set it to FULL)")
        if stop.wait(10):  # told to stop (not timed out)
            FakeTailer.stopped.append(self.source)


def test_tail_stops_every_source_and_raises_the_first_terminal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdc_repair.app import tail as tail_module

    monkeypatch.setattr(tail_module, "Tailer", FakeTailer)
    FakeTailer.stopped.clear()
    events = SignalEvents()
    with pytest.raises(TerminalError, match="MINIMAL on a"):
        tail_module.tail(settings_from_mapping(RAW), None, events)
    assert events.stop.is_set() and FakeTailer.stopped == ["b"]  # b was told to stop and did, before the raise


def test_tail_of_an_unknown_source_says_what_to_configure() -> None:
    from cdc_repair.app.tail import tail

    with pytest.raises(CdcRepairError, match="no capture configured for c "):
        tail(settings_from_mapping(RAW), "c", SignalEvents())


def test_signals_without_reload_leave_sighup_alone() -> None:
    before = signal.getsignal(signal.SIGHUP)
    restore = install(SignalEvents(), reload=False)
    try:
        assert signal.getsignal(signal.SIGHUP) == before
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    finally:
        restore()


class FakeRepairer:
    """Executes chunks until `fail_at` keys have been done; records what it finished."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.done = 0
        self.finished: list[int] = []

    def execute(self, pair: Any, chunk: list[WorkItem], strategy: Any) -> list[KeyResult]:
        if self.fail_at is not None and self.done >= self.fail_at:
            raise RuntimeError("server gone")
        self.done += len(chunk)
        return [KeyResult(i.pair, i.pk, "different", "repaired", "forward") for i in chunk]

    def finish(self, token: str, chunk: list[WorkItem], results: list[KeyResult]) -> dict[str, int]:
        self.finished += [i.entry.id for i in chunk if i.entry]
        return {"closed": len(chunk), "retry": 1, "parked": 0}


def _items(n: int) -> list[WorkItem]:
    return [WorkItem("p", pk_string([i]), SimpleNamespace(id=i)) for i in range(n)]  # type: ignore[arg-type]


def test_repair_claimed_finishes_chunk_by_chunk_and_reports_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdc_repair.repair import worker

    monkeypatch.setattr(worker, "CHUNK_KEYS", 3)
    repairer, store = FakeRepairer(), SimpleNamespace(release=lambda token, ids: pytest.fail("nothing to give back"))
    progress: list[int] = []
    done = worker.repair_claimed(repairer, store, "t", None, _items(7), None,  # type: ignore[arg-type]
                                 on_chunk=progress.append)
    assert progress == [3, 6, 7] and repairer.finished == list(range(7))
    assert len(done.results) == 7 and (done.retry, done.parked) == (3, 0)


def test_repair_claimed_gives_back_what_it_did_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdc_repair.repair import worker

    monkeypatch.setattr(worker, "CHUNK_KEYS", 3)
    released: list[tuple[str, list[int]]] = []
    store = SimpleNamespace(release=lambda token, ids: released.append((token, list(ids))))
    repairer = FakeRepairer(fail_at=3)
    with pytest.raises(RuntimeError, match="server gone"):
        worker.repair_claimed(repairer, store, "t", None, _items(7), None)  # type: ignore[arg-type]
    assert repairer.finished == [0, 1, 2] and released == [("t", [3, 4, 5, 6])]
