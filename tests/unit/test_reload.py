"""diff_settings and LiveSettings: which keys apply live, which need a restart, bad files rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_repair.config import Settings, settings_from_mapping
from cdc_repair.runtime.reload import LiveSettings, diff_settings, flatten


def raw(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "servers": {"a": {"dsn": "mysql://u:secret@127.0.0.1:1/"}},
        "state": {"dsn": "mysql://u:secret@127.0.0.1:1/s"},
        "kafka": {"bootstrap_servers": ["x:1"]},
        "pairs": [{"name": "p", "source": {"server": "a", "table": "d.t"}, "target": {"server": "a", "table": "d.u"}}],
    }
    base.update(sections)
    return base


def settings(**sections: Any) -> Settings:
    return settings_from_mapping(raw(**sections))


def test_flatten_names_nested_and_list_keys() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "p": [{"x": 1}, {"x": 2}], "e": {}}) == {
        "a.b": 1, "a.c": [1, 2], "p[0].x": 1, "p[1].x": 2, "e": {}}


@pytest.mark.parametrize(("changes", "live", "restart"), [
    ({}, [], []),
    ({"validator": {"settle_delay_s": 3}}, ["validator.settle_delay_s"], []),
    ({"validator": {"rechecks": 5, "full_scan": {"chunk_rows": 500}}},
     ["validator.full_scan.chunk_rows", "validator.rechecks"], []),
    ({"repair": {"rate_limit_per_s": 10}}, ["repair.rate_limit_per_s"], []),
    ({"scheduler": {"retry_interval_s": 3, "full_scan_cron": "0 1 * * *"}},
     ["scheduler.full_scan_cron", "scheduler.retry_interval_s"], []),
    ({"log": {"level": "DEBUG", "format": "json"}}, ["log.level"], ["log.format"]),
    ({"kafka": {"bootstrap_servers": ["y:2"]}}, [], ["kafka.bootstrap_servers"]),
    ({"web": {"port": 9999}}, [], ["web.port"]),
    ({"ha": {"lock_name": "other", "lock_retry_s": 1}}, ["ha.lock_retry_s"], ["ha.lock_name"]),
    ({"validator": {"settle_delay_s": 2}, "state": {"dsn": "mysql://u:other@127.0.0.1:2/s"}},
     ["validator.settle_delay_s"], ["state.dsn.password", "state.dsn.port"]),
])
def test_diff_settings_sorts_keys(changes: dict[str, Any], live: list[str], restart: list[str]) -> None:
    assert diff_settings(settings(), settings(**changes)) == (live, restart)


def test_diff_settings_sees_pair_changes_as_restart() -> None:
    new = raw()
    new["pairs"][0]["strategy"] = "compensate"
    assert diff_settings(settings(), settings_from_mapping(new)) == ([], ["pairs[0].strategy"])


def test_live_settings_applies_only_live_keys_and_notifies(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    old = settings()
    live = LiveSettings(old, path)
    seen: list[list[str]] = []
    live.subscribe(lambda s, keys: seen.append(keys))
    path.write_text(yaml.safe_dump(raw(validator={"settle_delay_s": 4.5}, web={"port": 1234})))
    assert live.reload() == (["validator.settle_delay_s"], ["web.port"])
    assert live.current.validator.settle_delay_s == 4.5
    assert live.current.web.port == old.web.port  # restart-only: unchanged until restart
    assert seen == [["validator.settle_delay_s"]]
    assert live.generation == 1


def test_bad_file_is_rejected_and_old_config_stays(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.yaml"
    live = LiveSettings(settings(), path)
    path.write_text(yaml.safe_dump(raw(validator={"settle_delay_s": -1})))
    assert live.reload() is None
    assert live.current.validator.settle_delay_s == 1.0
    assert live.generation == 0
    assert live.last_reload is not None and live.last_reload["ok"] is False
    assert "validator.settle_delay_s" in caplog.text and "rejected" in caplog.text
