"""check() against the real MariaDB, and the ledger's idempotent upsert / resolve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_validate_support import ART_INSERT, Env, article, make_env

from cdc_repair.db import mysql
from cdc_repair.state import ledger
from cdc_repair.state.engine import state_engine
from cdc_repair.state.tables import inconsistency
from cdc_repair.validate.check import check
from cdc_repair_dev.devservices.mariadb import MariaDBServer


@pytest.fixture
def env(mariadb: MariaDBServer) -> Iterator[Env]:
    e = make_env(mariadb)
    yield e
    e.drop()


def test_check_publish_rules_both_directions(env: Env) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(1), article(2), article(3, status=3, title="new"),
                                        article(4, status=1), article(5), article(6, status=3)])
    env.many(ART_INSERT.format(t=tgt), [article(1, ctime=1, utime=1), article(2, title="stale"),
                                        article(3, status=3, title="old"), article(4, title="old"),
                                        article(6, status=2), article(7)])
    pair = env.settings.pair("articles")
    conn = mysql.connect(env.settings.server_dsn("author"))
    verdicts = check(pair, [(1,), ("2",), (3,), (4,), (5,), (6,), (7,), (8,), (1,)], conn, conn, batch_size=3)
    got = {v.key[0]: (v.kind, v.columns) for v in verdicts}
    assert got == {1: ("ok", ()), "2": ("different", ("title",)), 3: ("ok", ()), 4: ("not_applicable", ()),
                   5: ("missing_in_target", ()), 6: ("different", ("status",)), 7: ("extra_in_target", ()),
                   8: ("ok", ())}
    assert verdicts[1].source is not None and verdicts[1].source["title"] == "title 2"


def test_check_mirror_null_space_emoji_and_4mb(env: Env) -> None:
    ins = "INSERT INTO {t} (id, name, note, body, price, utime) VALUES (%s,%s,%s,%s,%s,%s)"
    big = b"\x00\xff" * (2 * 1024 * 1024)
    same = [(1, "a", None, b"x", 1.5, 1), (2, "emoji 😀", "", big, 2.0, 1)]
    env.many(ins.format(t=f"{env.author}.items"), [*same, (3, "a", None, b"", 0, 1), (4, "b ", "x", b"", 0, 1),
                                                    (5, "😀", "x", big, 0, 1), (6, "a", "", b"", 0, 1)])
    env.many(ins.format(t=f"{env.online}.items"), [*same, (3, "a", "", b"", 0, 1), (4, "b", "x", b"", 0, 1),
                                                    (5, "😁", "x", big[:-1] + b"!", 0, 1), (9, "o", "", b"", 0, 1)])
    conn = mysql.connect(env.settings.server_dsn("author"))
    got = {v.key[0]: (v.kind, v.columns) for v in check(env.settings.pair("items"), [(i,) for i in range(1, 10)],
                                                          conn, mysql.connect(env.settings.server_dsn("online")))}
    assert got == {1: ("ok", ()), 2: ("ok", ()), 3: ("different", ("note",)), 4: ("different", ("name",)),
                   5: ("different", ("name", "body")), 6: ("missing_in_target", ()), 7: ("ok", ()), 8: ("ok", ()),
                   9: ("extra_in_target", ())}


def test_ledger_is_idempotent_resolves_and_reopens(env: Env) -> None:
    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(1), article(2)])
    env.many(ART_INSERT.format(t=tgt), [article(2, title="x")])
    pair = env.settings.pair("articles")
    conn = mysql.connect(env.settings.server_dsn("author"))
    engine = state_engine(env.settings.state.dsn)
    try:
        first = ledger.record_verdicts(engine, check(pair, [(1,), (2,)], conn, conn), "cli",
                                       source_events={'["1"]': {"data": {"id": "1"}, "old": None}})
        assert sorted(first.inserted) == ['["1"]', '["2"]']
        again = ledger.record_verdicts(engine, check(pair, [(1,), (2,)], conn, conn), "stream")
        assert sorted(again.updated) == ['["1"]', '["2"]'] and not again.inserted
        with engine.connect() as c:
            assert c.execute(select(func.count()).select_from(inconsistency)).scalar() == 2
        entries = {e.pk: e for e in ledger.open_entries(engine, pair="articles")}
        assert entries['["1"]'].kind == "missing_in_target" and entries['["1"]'].seen_count == 2
        assert entries['["1"]'].source_event == {"data": {"id": "1"}, "old": None}
        assert entries['["2"]'].columns == ("title",) and entries['["2"]'].key == ("2",)

        env.sql(f"UPDATE {tgt} SET title='title 2' WHERE id=2")
        res = ledger.record_verdicts(engine, check(pair, [(2,)], conn, conn), "stream")
        assert res.resolved == ['["2"]']
        assert ledger.get_entry(engine, "articles", '["2"]').status == "resolved"  # type: ignore[union-attr]

        env.sql(f"UPDATE {tgt} SET title='again' WHERE id=2")
        res = ledger.record_verdicts(engine, check(pair, [(2,)], conn, conn), "full_scan")
        assert res.reopened == ['["2"]']
        entry = ledger.get_entry(engine, "articles", '["2"]')
        assert entry is not None and entry.status == "open" and entry.detected_by == "full_scan"
        with engine.connect() as c:
            assert c.execute(select(func.count()).select_from(inconsistency)).scalar() == 2
        assert ledger.counts(engine)[("articles", "missing_in_target", "open")] == 1
    finally:
        engine.dispose()


def test_cross_server_check_and_full_scan(env: Env, tmp_path: Path) -> None:
    """Source on the session MariaDB, target on a second server: check() and the full scan both work."""
    from test_validate_support import ARTICLE_DDL

    from cdc_repair.config import settings_from_mapping
    from cdc_repair.validate.full_scan import run_full_scan

    other = MariaDBServer(tmp_path / "db2", server_id=21).start()
    try:
        with other.root_connection().cursor() as cur:
            cur.execute(f"CREATE DATABASE {env.online}")
            cur.execute(ARTICLE_DDL.format(db=env.online, table="published_articles"))
        src = f"{env.author}.articles"
        env.many(ART_INSERT.format(t=src), [article(i) for i in range(1, 401)])
        conn2 = other.root_connection()
        with conn2.cursor() as cur:
            cur.executemany(ART_INSERT.format(t=f"{env.online}.published_articles"),
                            [article(i, title="x" if i == 77 else f"title {i}") for i in range(1, 401) if i != 5]
                            + [article(999)])
        raw = dict(env.raw)
        raw["servers"] = {"author": {"dsn": env.server.dsn().to_url()}, "online": {"dsn": other.dsn().to_url()}}
        settings = settings_from_mapping(raw)
        pair = settings.pair("articles")
        got = {v.key[0]: v.kind for v in check(pair, [(5,), (77,), (999,), (6,)],
                                                mysql.connect(settings.server_dsn("author")),
                                                mysql.connect(settings.server_dsn("online")))}
        assert got == {5: "missing_in_target", 77: "different", 999: "extra_in_target", 6: "ok"}
        report = run_full_scan(settings, "articles")
        assert {int(v.key[0]): v.kind for v in report.pairs[0].confirmed} == \
            {5: "missing_in_target", 77: "different", 999: "extra_in_target"}
    finally:
        other.stop()


def test_ledger_leaves_repairing_and_ignored_alone_and_keeps_failed_parked(env: Env) -> None:
    from cdc_repair.model.verdict import Verdict

    engine = state_engine(env.settings.state.dsn)
    try:
        bad = [Verdict("articles", (k,), "different", ("title",)) for k in (1, 2, 3)]
        ledger.record_verdicts(engine, bad, "stream")
        ids = {e.pk: e.id for e in ledger.open_entries(engine, due=False)}
        ledger.set_status(engine, ids['["1"]'], "repairing")
        ledger.set_status(engine, ids['["2"]'], "ignored")
        ledger.set_status(engine, ids['["3"]'], "failed", last_error="guard", attempts=8)
        res = ledger.record_verdicts(engine, [Verdict("articles", (k,), "ok") for k in (1, 2)], "stream")
        assert res.resolved == []  # repairing is the repairer's; ignored stays ignored
        again = ledger.record_verdicts(engine, [bad[2]], "full_scan")
        assert again.updated == ['["3"]']
        e3 = ledger.get_entry(engine, "articles", '["3"]')
        assert e3 is not None and e3.status == "failed" and e3.attempts == 8 and e3.seen_count == 2
        res = ledger.record_verdicts(engine, [Verdict("articles", (3,), "not_applicable")], "stream")
        assert res.resolved == ['["3"]']
        # the same key in one batch: the later verdict wins
        res = ledger.record_verdicts(engine, [bad[2], Verdict("articles", (3,), "ok")], "stream")
        assert res.inserted == [] and res.reopened == []
    finally:
        engine.dispose()


def test_key_confirmer_believes_only_a_persisting_mismatch_and_records_it_once(env: Env) -> None:
    """The one confirmer (check → re-check → record): a difference fixed before its re-check is not confirmed,
    one that persists across every re-check is, each settled key is recorded and handed back once, and a
    failed record leaves nothing scheduled (the caller still holds the keys)."""
    from cdc_repair.model.verdict import Verdict
    from cdc_repair.validate.confirmer import KeyConfirmer

    src, tgt = f"{env.author}.articles", f"{env.online}.published_articles"
    env.many(ART_INSERT.format(t=src), [article(1), article(2), article(3)])
    env.many(ART_INSERT.format(t=tgt), [article(1), article(2, title="stale"), article(3, title="lagging")])
    pair = env.settings.pair("articles")
    conn = mysql.connect(env.settings.server_dsn("author"))
    clock = [0.0]
    recorded: list[list[tuple[str, str]]] = []
    done: list[tuple[list[str], list[str]]] = []

    def sleep(s: float) -> None:  # the replica catches up on key 3 while the confirmer waits
        clock[0] += s
        env.sql(f"UPDATE {tgt} SET title='title 3' WHERE id=3")

    def on_done(consistent: list[Verdict], confirmed: list[Verdict]) -> None:
        done.append(([v.pk for v in consistent], [v.pk for v in confirmed]))

    c = KeyConfirmer(pair, lambda: (conn, conn), lambda vs: recorded.append([(v.pk, v.kind) for v in vs]),
                     origin="cli", rechecks=2, recheck_delay_s=1.0, batch_size=2, on_done=on_done,
                     clock=lambda: clock[0], sleep=sleep)
    assert [v.kind for v in c.check([(1,), (2,), (3,)])] == ["ok", "different", "different"]
    assert recorded == [[('["1"]', "ok")]] and len(c) == 2 and c.pending('["3"]') and c.next_due() == 1.0
    c.drain()
    assert recorded[1:] == [[('["3"]', "ok")], [('["2"]', "different")]]
    assert done[-1] == ([], ['["2"]']) and len(c) == 0 and c.diffs == {"different": 1}
    assert [(v.pk, v.source) for v in c.confirmed] == [('["2"]', None)] and c.keys_checked == 6

    def fail(_: list[Verdict]) -> None:
        raise RuntimeError("ledger down")

    broken = KeyConfirmer(pair, lambda: (conn, conn), fail, origin="cli", rechecks=0, recheck_delay_s=1.0,
                          batch_size=10)
    with pytest.raises(RuntimeError):
        broken.check([(2,)])
    assert len(broken) == 0 and broken.diffs == {}
