"""`rollback --skip-dirty`, ledger entries reopened by a rollback, and a key repaired twice in one run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.cli import cli
from cdc_repair.model.keys import pk_string
from cdc_repair.repair.repairer import Repairer, WorkItem
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def repaired(env: Env, n: int = 6) -> tuple[str, dict[int, object]]:
    """n keys of every kind repaired in one run; returns the run id and the online rows before it."""
    env.many(INSERT.format(t=env.src), [article(i, title=f"new {i}") for i in range(1, n)])
    env.many(INSERT.format(t=env.tgt), [article(i) for i in range(2, n + 1)])  # 1 missing, n orphan, others differ
    env.record(range(1, n + 1))
    before = {i: env.row(env.tgt, i) for i in range(1, n + 1)}
    report = run_repair(env.settings, mode="execute")
    assert report.exit_code == 0, report.summary()
    return report.run_id, before


def test_skip_dirty_rolls_back_all_the_others_lists_the_dirty_ones_and_exits_2(env: Env, tmp_path: Path) -> None:
    run_id, before = repaired(env)
    env.sql(f"UPDATE {env.tgt} SET title = 'hand edit' WHERE id IN (2, 4)")
    dirty_rows = {i: env.row(env.tgt, i) for i in (2, 4)}
    cfg = env.write_config(tmp_path / "c.yaml")

    out = CliRunner().invoke(cli, ["--config", str(cfg), "rollback", run_id, "--skip-dirty"])
    assert out.exit_code == 2, out.output
    assert "dirty" in out.output and '["2"]' in out.output and '["4"]' in out.output
    for i in (1, 3, 5, 6):
        assert env.row(env.tgt, i) == before[i], i  # every other repair undone, byte for byte
    assert {i: env.row(env.tgt, i) for i in (2, 4)} == dirty_rows  # the dirty rows untouched

    again = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "rollback", run_id, "--skip-dirty"])
    assert again.exit_code == 2
    outcomes = {i["pk"]: i["outcome"] for i in orjson.loads(again.stdout)["items"]}
    assert outcomes == {pk_string([i]): "dirty" if i in (2, 4) else "skipped" for i in range(1, 7)}


def test_a_rollback_reopens_the_ledger_entries_so_repair_and_status_see_them(env: Env, tmp_path: Path) -> None:
    run_id, before = repaired(env)
    assert {e["status"] for e in env.ledger().values()} == {"repaired"}
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, run_id)
    finally:
        store.close()
    assert back.exit_code == 0 and {i.outcome for i in back.items} == {"undone"}
    assert {i: env.row(env.tgt, i) for i in range(1, 7)} == before
    assert {pk: e["status"] for pk, e in env.ledger().items()} == {pk_string([i]): "open" for i in range(1, 7)}
    cfg = env.write_config(tmp_path / "c.yaml")
    status = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "status"])
    assert orjson.loads(status.stdout)["inconsistencies"]["open_total"] == 6, status.output
    again = run_repair(env.settings, mode="execute")  # not "nothing to do"
    assert again.count("repaired") == 6 and again.exit_code == 0
    assert [v for v in env.verdicts(range(1, 7)) if v.is_mismatch] == []


def test_a_key_repaired_twice_in_one_run_rolls_back_to_the_first_before_image(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(1, title="v1"), article(2, title="w1")])
    env.many(INSERT.format(t=env.tgt), [article(1, title="v0"), article(2, title="w0")])
    before = {i: env.row(env.tgt, i) for i in (1, 2)}
    calls: list[int] = []

    def author_edits_between_rounds(_batch: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            env.sql(f"UPDATE {env.src} SET title = CONCAT(title, '+') WHERE id IN (1, 2)")

    store = StateStore(env.settings.state.dsn)
    repairer = Repairer(env.settings, store, before_write=author_edits_between_rounds)
    try:
        items = [WorkItem("articles", pk_string([i])) for i in (1, 2)]
        results = repairer.execute(env.pair, items, repairer.strategy_for(env.pair))
    finally:
        repairer.close()
    try:
        assert [len(r.repair_ids) for r in results] == [2, 2]
        assert env.row(env.tgt, 1)["title"] == "v1+"
        back = rollback(env.settings, store, repairer.run_id)
    finally:
        store.close()
    assert [i.outcome for i in back.items] == ["undone"] * 4
    assert {i: env.row(env.tgt, i) for i in (1, 2)} == before


def test_rolling_back_the_rollback_run_reapplies_every_repair(env: Env) -> None:
    run_id, before = repaired(env)
    after_repair = {i: env.row(env.tgt, i) for i in range(1, 7)}
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, run_id)
        assert {i: env.row(env.tgt, i) for i in range(1, 7)} == before
        [rollback_run] = {r[0] for r in env.sql(f"SELECT run_id FROM {env.prefix}_state.repair_log "
                                                 f"WHERE strategy = 'rollback'")}
        assert {i.rollback_id for i in back.items} == {r[0] for r in env.sql(
            f"SELECT repair_id FROM {env.prefix}_state.repair_log WHERE run_id = %s", (rollback_run,))}
        redo = rollback(env.settings, store, rollback_run)
    finally:
        store.close()
    assert redo.exit_code == 0 and [i.outcome for i in redo.items] == ["undone"] * 6
    assert {i: env.row(env.tgt, i) for i in range(1, 7)} == after_repair
