"""DESIGN's lesson: ON UPDATE CURRENT_TIMESTAMP columns must not make a rollback look dirty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_repair_support import Env, make_env

from cdc_repair.app.repair import run_repair
from cdc_repair.config import settings_from_mapping
from cdc_repair.repair.rollback import rollback
from cdc_repair.repair.store import StateStore
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    e.sql(f"CREATE TABLE {e.author}.posts (id INT PRIMARY KEY, title VARCHAR(50))")
    e.sql(f"CREATE TABLE {e.online}.posts (id INT PRIMARY KEY, title VARCHAR(50), views INT NOT NULL DEFAULT 0, "
          f"mtime TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))")
    raw = {**e.raw, "pairs": [{"name": "posts", "kind": "custom", "key": ["id"], "compare": ["title"],
                               "rules": [{"expect": "equal"}],
                               "source": {"server": "author", "table": f"{e.author}.posts"},
                               "target": {"server": "online", "table": f"{e.online}.posts"}}]}
    e.settings, e.raw = settings_from_mapping(raw), raw
    yield e
    e.drop()


def test_rollback_ignores_columns_the_repair_did_not_write(env: Env) -> None:
    env.sql(f"INSERT INTO {env.author}.posts VALUES (1, 'right')")
    env.sql(f"INSERT INTO {env.online}.posts (id, title, views) VALUES (1, 'wrong', 5)")
    report = run_repair(env.settings, mode="execute", pair_names=("posts",), keys=("1",))
    assert [r.status for r in report.results] == ["repaired"]
    [(mtime_after_repair,)] = env.sql(f"SELECT mtime FROM {env.online}.posts WHERE id = 1")
    # readers keep counting views: the server moves mtime, a column the repair never set
    env.sql(f"UPDATE {env.online}.posts SET views = views + 1 WHERE id = 1")
    [(title, views, mtime)] = env.sql(f"SELECT title, views, mtime FROM {env.online}.posts WHERE id = 1")
    assert (title, views) == ("right", 6) and mtime > mtime_after_repair
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, report.run_id)
    finally:
        store.close()
    assert [i.outcome for i in back.items] == ["undone"]  # not "dirty"
    assert env.sql(f"SELECT title, views FROM {env.online}.posts WHERE id = 1") == [("wrong", 6)]


def test_the_rollbacks_own_undo_record_holds_the_row_the_server_left(env: Env) -> None:
    """The rollback's after-image is the row as the server left it, including columns the restore did not set
    (here: mtime, ON UPDATE), so rolling the rollback back compares against what was really there."""
    import orjson

    env.sql(f"INSERT INTO {env.author}.posts VALUES (1, 'right')")
    env.sql(f"INSERT INTO {env.online}.posts (id, title, views) VALUES (1, 'wrong', 5)")
    report = run_repair(env.settings, mode="execute", pair_names=("posts",), keys=("1",))
    store = StateStore(env.settings.state.dsn)
    try:
        back = rollback(env.settings, store, report.run_id)
    finally:
        store.close()
    [item] = back.items
    [(after,)] = env.sql(f"SELECT after_image FROM {env.online}.undo_log WHERE xid = %s", (item.rollback_id,))
    fields = {f["name"]: f["value"] for f in orjson.loads(after)["rows"][0]["fields"]}
    [(title, mtime)] = env.sql(f"SELECT title, mtime FROM {env.online}.posts WHERE id = 1")
    assert fields["title"] == title == "wrong"
    assert fields["mtime"] == mtime.isoformat()
