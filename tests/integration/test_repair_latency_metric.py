"""`cdc_repair_repair_latency_seconds` has one sample per applied repair (docs/observability.md), not one per
batch: a histogram per batch undercounts repairs and its quantiles weigh a 1-row batch like a 500-row one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_repair_support import INSERT, Env, article, make_env

from cdc_repair import metrics
from cdc_repair.app.repair import run_repair
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def latency(what: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"cdc_repair_repair_latency_seconds_{what}",
                                             {"strategy": "forward"}) or 0.0


def test_repair_latency_has_one_sample_per_applied_repair(env: Env) -> None:
    env.many(INSERT.format(t=env.src), [article(i) for i in range(1, 8)])  # 7 rows missing in the target
    env.record(range(1, 8))
    count, total = latency("count"), latency("sum")
    applied = metrics.REGISTRY.get_sample_value("cdc_repair_repair_actions_total",
                                                {"pair": env.pair.name, "strategy": "forward",
                                                 "outcome": "applied"}) or 0.0
    report = run_repair(env.settings, mode="execute")
    assert report.exit_code == 0, report.to_json()
    assert [r.status for r in report.results] == ["repaired"] * 7
    applied_now = metrics.REGISTRY.get_sample_value("cdc_repair_repair_actions_total",
                                                    {"pair": env.pair.name, "strategy": "forward",
                                                     "outcome": "applied"})
    assert applied_now == applied + 7
    assert latency("count") - count == 7, "one latency sample per applied repair"
    assert latency("sum") - total > 0
