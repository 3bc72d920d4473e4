"""Rollback from the undo log against the real MariaDB: exact restore, dirty refusal, idempotence, --force."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.cli import cli
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def repaired_env(env: Env) -> tuple[str, dict[int, object]]:
    env.many(INSERT.format(t=env.src), [article(1), article(2, title="new"), article(3, status=3)])
    env.many(INSERT.format(t=env.tgt), [article(2), article(3), article(4)])
    env.record(range(1, 5))
    before = {i: env.row(env.tgt, i) for i in range(1, 5)}
    report = run_repair(env.settings, mode="execute")
    assert report.exit_code == 0
    return report.run_id, before


def do_rollback(env: Env, target: str, **kw: bool):  # type: ignore[no-untyped-def]
    store = StateStore(env.settings.state.dsn)
    try:
        return rollback(env.settings, store, target, **kw)
    finally:
        store.close()


def test_rollback_of_a_run_restores_exactly_the_before_images_and_twice_is_a_no_op(env: Env) -> None:
    run_id, before = repaired_env(env)
    dry = do_rollback(env, run_id, dry_run=True)
    assert [i.outcome for i in dry.items] == ["would_undo"] * 4
    assert env.row(env.tgt, 4) is None  # dry run wrote nothing

    report = do_rollback(env, run_id)
    assert [i.outcome for i in report.items] == ["undone"] * 4 and report.exit_code == 0
    assert [i.pk for i in report.items] == ['["4"]', '["3"]', '["2"]', '["1"]']  # newest first
    assert {i: env.row(env.tgt, i) for i in range(1, 5)} == before  # every column, exactly

    again = do_rollback(env, run_id)
    assert [i.outcome for i in again.items] == ["skipped"] * 4 and again.exit_code == 0
    assert {i: env.row(env.tgt, i) for i in range(1, 5)} == before
    status = env.sql(f"SELECT status, COUNT(*) FROM {env.prefix}_state.repair_log GROUP BY status ORDER BY status")
    assert status == [("applied", 4), ("rolled_back", 4)]  # 4 rollback records + 4 originals
    undo = env.sql(f"SELECT strategy, log_status, COUNT(*) FROM {env.online}.undo_log GROUP BY strategy, log_status")
    assert sorted(undo) == [("forward", 1, 4), ("rollback", 0, 4)]


def test_rollback_of_a_rollback_reapplies_the_repair(env: Env) -> None:
    run_id, _ = repaired_env(env)
    first = do_rollback(env, run_id)
    repaired_row2 = "new"
    assert env.row(env.tgt, 2)["title"] == "title 2"
    rb_id = next(i.rollback_id for i in first.items if i.pk == '["2"]')
    assert rb_id is not None
    redo = do_rollback(env, rb_id)
    assert [i.outcome for i in redo.items] == ["undone"]
    assert env.row(env.tgt, 2)["title"] == repaired_row2


def test_dirty_rollback_is_refused_with_three_images_and_force_restores(env: Env, tmp_path: Path) -> None:
    run_id, before = repaired_env(env)
    repair_2 = env.ledger()['["2"]']["repair_id"]
    env.sql(f"UPDATE {env.tgt} SET title = 'edited after the repair' WHERE id = 2")
    cfg = env.write_config(tmp_path / "c.yaml")
    runner = CliRunner()

    refused = runner.invoke(cli, ["--config", str(cfg), "--json", "rollback", repair_2])
    assert refused.exit_code == 2, refused.output
    [item] = orjson.loads(refused.stdout)["items"]
    assert item["outcome"] == "dirty"
    assert item["images"]["before"]["title"] == "title 2"
    assert item["images"]["after"]["title"] == "new"
    assert item["images"]["current"]["title"] == "edited after the repair"
    assert env.row(env.tgt, 2)["title"] == "edited after the repair"  # untouched
    assert env.sql(f"SELECT status FROM {env.prefix}_state.repair_log WHERE repair_id = %s", (repair_2,)) == [
        ("dirty",)]

    text = runner.invoke(cli, ["--config", str(cfg), "rollback", repair_2])
    assert text.exit_code == 2 and "current" in text.output and "--force" in text.output

    # a run rollback stops at the dirty row (newest first: 4 and 3 are undone first, then 2 refuses, 1 not run)
    run = do_rollback(env, run_id)
    assert [i.outcome for i in run.items] == ["undone", "undone", "dirty", "not_run"]

    forced = runner.invoke(cli, ["--config", str(cfg), "--json", "rollback", repair_2, "--force"])
    assert forced.exit_code == 0, forced.output
    assert orjson.loads(forced.stdout)["items"][0]["outcome"] == "forced"
    assert env.row(env.tgt, 2) == before[2]
    assert env.sql(f"SELECT status FROM {env.prefix}_state.repair_log WHERE strategy = 'rollback' "
                   f"AND sql_text LIKE %s", (f"-- rollback of {repair_2}%",)) == [("forced",)]


def test_unknown_id_is_an_error(env: Env, tmp_path: Path) -> None:
    cfg = env.write_config(tmp_path / "c.yaml")
    out = CliRunner().invoke(cli, ["--config", str(cfg), "rollback", "rp-nope"])
    assert out.exit_code == 1 and "nothing found" in out.output


def test_forced_rollback_is_logged_as_a_warning(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    repaired_env(env)
    repair_2 = env.ledger()['["2"]']["repair_id"]
    env.sql(f"UPDATE {env.tgt} SET title = 'edited after the repair' WHERE id = 2")
    with caplog.at_level("WARNING", logger="cdc_repair.repair.rollback"):
        report = do_rollback(env, repair_2, force=True)
    assert [i.outcome for i in report.items] == ["forced"]
    assert any(r.levelname == "WARNING" and "FORCED" in r.getMessage() and repair_2 in r.getMessage()
               for r in caplog.records)
