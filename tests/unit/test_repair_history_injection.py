"""The daemon's repairer is given the binlog reader compensation needs by the composition root (app/daemon.py): the
repair stage imports no capture code, and a repairer given none refuses compensation in one line."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_repair.app import daemon as app
from cdc_repair.config import settings_from_mapping
from cdc_repair.errors import BinlogUnavailableError
from cdc_repair.runtime.jobs import JobContext
from cdc_repair.runtime.reload import LiveSettings

RAW = {"servers": {"a": {"dsn": "mysql://u:p@127.0.0.1:1/"}}, "state": {"dsn": "mysql://u:p@127.0.0.1:1/s"},
       "kafka": {"bootstrap_servers": ["x:1"]},
       "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"}, "target": {"server": "a", "table": "d.u"}}]}


def test_the_daemon_gives_its_repair_stage_a_binlog_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdc_repair.source.history import BinlogHistory

    built: dict[str, Any] = {}

    class Worker:  # stands in for repair.worker.RepairWorker (same keywords), without a state database
        def __init__(self, settings: Any, *, live: Any = None, history: Any = None) -> None:
            built.update(settings=settings, history=history)

    monkeypatch.setattr(app, "RepairWorker", Worker)
    settings = settings_from_mapping(RAW)
    specs = {s.name: s for s in app.stage_specs(LiveSettings(settings), JobContext(LiveSettings(settings), None, "t"))}
    specs["repair"].factory()
    assert built["history"] is BinlogHistory
    assert isinstance(built["history"](settings), BinlogHistory)


def test_a_repairer_without_a_binlog_reader_refuses_to_read_history() -> None:
    from cdc_repair.repair.repairer import Repairer

    repairer = Repairer(settings_from_mapping(RAW), None)
    with pytest.raises(BinlogUnavailableError, match="--strategy forward"):
        _ = repairer.history
