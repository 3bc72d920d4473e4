"""Config errors: each names its path and the fix; every problem is reported at once; no password leaks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdc_repair.config import load_settings
from cdc_repair.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _demo() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def _problems(tmp_path: Path, raw: dict, env: dict[str, str] | None = None) -> list[str]:  # type: ignore[type-arg]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return info.value.problems


def test_demo_and_example_configs_are_valid() -> None:
    demo = load_settings(ROOT / "config" / "demo.yaml", {})
    assert demo.pairs[0].name == "articles"
    assert [r.expect for r in demo.pairs[0].effective_rules()] == ["equal", "if_exists", "none"]
    env = {"AUTHOR_DB_PASSWORD": "a", "ONLINE_DB_PASSWORD": "b", "STATE_DB_PASSWORD": "c"}
    example = load_settings(ROOT / "config" / "example.yaml", env)
    assert example.servers["author"].dsn.password == "a"
    assert example.pair("users_mirror").effective_rules()[0].expect == "equal"


def test_unknown_key_names_path_and_allowed_keys(tmp_path: Path) -> None:
    raw = _demo()
    raw["validator"]["settle_dealy_s"] = 2
    assert _problems(tmp_path, raw) == [
        "validator.settle_dealy_s: unknown key 'settle_dealy_s' (allowed here: settle_delay_s, recheck_delay_s, "
        "rechecks, batch_max_keys, full_scan)"]


def test_wrong_type_names_path_and_value(tmp_path: Path) -> None:
    raw = _demo()
    raw["kafka"]["partitions"] = "three"
    (problem,) = _problems(tmp_path, raw)
    assert problem.startswith("kafka.partitions: Input should be a valid integer")
    assert "'three'" in problem


def test_bad_dsn_is_explained_without_the_password(tmp_path: Path) -> None:
    raw = _demo()
    raw["servers"]["author"]["dsn"] = "postgres://root:hunter2@db:5432/"
    raw["state"]["dsn"] = "mysql://root:hunter2@db:notaport/x"
    problems = _problems(tmp_path, raw)
    assert problems[0].startswith("servers.author.dsn: unsupported scheme 'postgres'")
    assert problems[1].startswith("state.dsn: not a valid DSN")
    assert not any("hunter2" in p for p in problems)


def test_missing_pair_column_lists_the_columns(tmp_path: Path) -> None:
    raw = _demo()
    raw["pairs"][0]["rules"] = [{"when": {"status": 2}, "expect": "equal"},
                                {"when": {"stauts": 3}, "expect": "if_exists"}]
    assert _problems(tmp_path, raw) == [
        "pairs[0].rules[1].when: unknown column 'stauts' "
        "(columns: id, author_id, title, content, status, ctime, utime)"]


def test_bad_cron_names_key_and_form(tmp_path: Path) -> None:
    raw = _demo()
    raw["scheduler"]["full_scan_cron"] = "61 * * * *"
    (problem,) = _problems(tmp_path, raw)
    assert problem.startswith("scheduler.full_scan_cron: invalid cron expression '61 * * * *'")
    assert "minute hour day month weekday" in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    raw = _demo()
    raw["bogus"] = 1
    raw["kafka"]["partitions"] = 0
    raw["pairs"][0]["target"]["server"] = "nowhere"
    raw["scheduler"]["cleanup_cron"] = "not a cron"
    problems = _problems(tmp_path, raw)
    assert [p.split(":", 1)[0] for p in problems] == [
        "bogus", "kafka.partitions", "pairs[0].target.server", "scheduler.cleanup_cron"]


def test_environment_overrides_and_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_demo()))
    env = {"CDC_REPAIR_VALIDATOR__SETTLE_DELAY_S": "2.5", "CDC_REPAIR_PAIRS__0__STRATEGY": "compensate",
           "CDC_REPAIR_DEV_PASSWORD": "pw", "CDC_REPAIR_DEV_MARIADB_PORT": "4000"}
    settings = load_settings(path, env)
    assert settings.validator.settle_delay_s == 2.5
    assert settings.pairs[0].strategy == "compensate"
    assert settings.state.dsn.port == 4000 and settings.state.dsn.password == "pw"


def test_unknown_environment_override_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_demo()))
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"CDC_REPAIR_PAIRS__7__STRATEGY": "forward", "CDC_REPAIR_VALIDATOR__NOPE": "1"})
    assert info.value.problems == [
        "pairs.7.strategy: cannot apply environment override CDC_REPAIR_PAIRS__7__STRATEGY "
        "(no such place in the config; use CDC_REPAIR_SECTION__KEY)",
        "validator.nope: unknown key 'nope' (allowed here: settle_delay_s, recheck_delay_s, rechecks, "
        "batch_max_keys, full_scan)"]


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("servers:\n  a: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.problems[0].startswith(f"{path}: line 3 column 1: invalid YAML")


def test_publish_pair_defaults_to_the_contract_columns() -> None:
    from cdc_repair.config import PairConfig

    ref = {"server": "s", "table": "a.b"}
    minimal = PairConfig(name="p", kind="publish", source=ref, target=ref)  # type: ignore[arg-type]
    assert minimal.compare_columns(["id", "author_id", "title", "content", "status", "ctime", "utime"]) == [
        "author_id", "title", "content", "status"]
    ignoring = PairConfig(name="p", kind="publish", source=ref, target=ref, ignore=["status"])  # type: ignore[arg-type]
    assert ignoring.compare_columns() == ["author_id", "title", "content"]
    mirror = PairConfig(name="m", kind="mirror", source=ref, target=ref)  # type: ignore[arg-type]
    assert mirror.compare_columns(["id", "x", "utime"]) == ["x", "utime"]
    assert mirror.compare_summary()["not_compared"] == ["id"]
