"""Pure parts of "idle capture is idle": own state schema exclusion and reading lag 0 past unpublished events."""

from __future__ import annotations

from cdc_repair.db.dsn import Dsn
from cdc_repair.source.filters import TableMatcher, own_state_exclude
from cdc_repair.source.status import events_publish_nothing


def test_state_schema_is_excluded_only_on_the_same_server() -> None:
    state = Dsn(host="localhost", port=3306, database="cdc_repair")
    assert own_state_exclude(state, Dsn(host="127.0.0.1", port=3306)) == ["cdc_repair.*"]
    assert own_state_exclude(state, Dsn(host="127.0.0.1", port=3307)) == []
    assert own_state_exclude(state, Dsn(host="db.internal", port=3306)) == []
    assert own_state_exclude(Dsn(host="localhost", port=3306), Dsn(host="localhost", port=3306)) == []


def test_schema_level_ddl_follows_a_whole_schema_exclude() -> None:
    matcher = TableMatcher(["*.*"], ["cdc_repair.*"])
    assert not matcher.schema_included("cdc_repair")
    assert not matcher("cdc_repair", "checkpoint")
    assert matcher.schema_included("webook")
    assert TableMatcher(["*.*"], ["cdc_repair.ledger"]).schema_included("cdc_repair")


MATCHER = TableMatcher(["webook.*"], [])
OWN_CHECKPOINT = [("Gtid", 400, "BEGIN GTID 0-1-7"), ("Annotate_rows", 480, "UPDATE checkpoint SET ..."),
                  ("Table_map", 540, "table_id: 33 (cdc_repair.checkpoint)"),
                  ("Update_rows_v1", 640, "table_id: 33 flags: STMT_END_F"), ("Xid", 671, "COMMIT /* xid=12 */")]


def test_only_unpublished_transactions_after_the_checkpoint_read_as_no_lag() -> None:
    assert events_publish_nothing(OWN_CHECKPOINT, 671, MATCHER)
    # the server moved on after status looked at its end: later events do not count
    assert events_publish_nothing([*OWN_CHECKPOINT, ("Gtid", 700, "BEGIN GTID 0-1-8"),
                                   ("Table_map", 760, "table_id: 40 (webook.articles)")], 671, MATCHER)


def test_an_included_row_a_ddl_or_an_unseen_end_is_lag() -> None:
    included = [("Gtid", 400, "BEGIN GTID 0-1-7"), ("Table_map", 460, "table_id: 40 (webook.articles)"),
                ("Write_rows_v1", 520, "table_id: 40 flags: STMT_END_F"), ("Xid", 551, "COMMIT /* xid=3 */")]
    assert not events_publish_nothing(included, 551, MATCHER)
    ddl = [("Gtid", 400, "GTID 0-1-9"), ("Query", 500, "use `other`; ALTER TABLE t ADD c INT")]
    assert not events_publish_nothing(ddl, 500, MATCHER)
    assert not events_publish_nothing(OWN_CHECKPOINT, 900, MATCHER)  # LIMIT reached before the server's end
    assert not events_publish_nothing([], 671, MATCHER)
