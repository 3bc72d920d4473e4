"""The ledger's vocabulary and the claim filter (pure: no database)."""

from __future__ import annotations

from cdc_repair.model.ledger import (
    ACTIVE_STATUSES,
    CLOSED_STATUSES,
    FINISHED_STATUSES,
    IN_PROGRESS_STATUSES,
    LedgerFilter,
    LedgerStatus,
)
from cdc_repair.state.claims import filter_sql


def test_filters_build_a_parameterised_where() -> None:
    assert filter_sql(LedgerFilter()) == ("1=1", {})
    where, params = filter_sql(LedgerFilter(pairs=("a",), pks=('["1"]', '["2"]'), kinds=("different",)), "i")
    assert where == "i.`pair` IN :f_pair AND i.`pk` IN :f_pk AND i.`kind` IN :f_kind"
    assert params == {"f_pair": ["a"], "f_pk": ['["1"]', '["2"]'], "f_kind": ["different"]}


def test_every_status_is_either_active_or_finished_and_reads_as_its_stored_text() -> None:
    assert set(ACTIVE_STATUSES) | set(FINISHED_STATUSES) == set(LedgerStatus)
    assert not set(ACTIVE_STATUSES) & set(FINISHED_STATUSES)
    assert set(IN_PROGRESS_STATUSES) < set(ACTIVE_STATUSES) and set(CLOSED_STATUSES) < set(FINISHED_STATUSES)
    assert LedgerStatus.OPEN == "open" and f"{LedgerStatus.REPAIRING}" == "repairing"
    assert "failed" in ACTIVE_STATUSES and {LedgerStatus.RESOLVED: 1}.get("resolved") == 1
