"""A minimal `kind: publish` pair (no compare/ignore/columns) follows the documented publish contract: it compares
author_id, title, content and status only, never ctime/utime; check-config shows each pair's compared columns
(issue 11 item 2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair.cli import cli
from cdc_repair.config import settings_from_mapping
from cdc_repair.validate.full_scan import run_full_scan
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb, validator={"rechecks": 1, "recheck_delay_s": 0.0, "settle_delay_s": 0.0})
    pair = e.raw["pairs"][0]
    for key in ("compare", "ignore", "columns"):
        del pair[key]
    e.settings = settings_from_mapping(e.raw)
    yield e
    e.drop()


def test_minimal_publish_pair_compares_the_contract_columns_only(env: Env, tmp_path: Path) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 5)])
    # online rows stamped at other times (publishing sets ctime/utime itself): consistent by the contract
    env.many(INSERT.format(t=env.tgt), [article(i, ctime=9000 + i, utime=9100 + i) for i in range(1, 5)])
    env.sql(f"UPDATE {env.tgt} SET title = 'broken' WHERE id = 2")
    env.sql(f"UPDATE {env.tgt} SET author_id = 99, status = 3 WHERE id = 3")

    kinds = {v.pk: (v.kind, v.columns) for v in env.verdicts(range(1, 5))}
    assert kinds == {'["1"]': ("ok", ()), '["2"]': ("different", ("title",)),
                     '["3"]': ("different", ("author_id", "status")), '["4"]': ("ok", ())}
    assert run_full_scan(env.settings).differences == 2

    cfg = env.write_config(tmp_path / "c.yaml")
    done = CliRunner().invoke(cli, ["--config", str(cfg), "--json", "repair", "--execute"])
    assert done.exit_code == 0, done.output
    assert sorted(r["pk"] for r in orjson.loads(done.stdout)["results"]) == ['["2"]', '["3"]']
    assert env.row(env.tgt, 2) == dict(zip(("id", "author_id", "title", "content", "status", "ctime", "utime"),
                                           article(2, ctime=9002, utime=9102), strict=True))
    assert env.row(env.tgt, 1)["ctime"] == 9001  # never overwritten


def test_check_config_shows_the_effective_compared_columns(env: Env, tmp_path: Path) -> None:
    env.raw["pairs"].append({"name": "mirror", "kind": "mirror", "source": {"server": "author", "table": env.src},
                             "target": {"server": "online", "table": env.tgt}, "ignore": ["utime"]})
    cfg = env.write_config(tmp_path / "c.yaml")
    out = CliRunner().invoke(cli, ["--config", str(cfg), "check-config"])
    assert out.exit_code == 0, out.output
    assert "pair articles (publish, key id): compares author_id, title, content, status" in out.stdout
    assert "pair mirror (mirror, key id): compares every column but id, utime" in out.stdout

    doc = orjson.loads(CliRunner().invoke(cli, ["--config", str(cfg), "--json", "check-config"]).stdout)
    assert doc["pairs"][0]["compare"] == ["author_id", "title", "content", "status"]
    assert doc["pairs"][1]["compare"] is None and doc["pairs"][1]["not_compared"] == ["id", "utime"]
