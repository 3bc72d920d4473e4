"""DSN parsing and masking: passwords never survive into text meant for people."""

from __future__ import annotations

import pytest

from cdc_repair.db.dsn import mask, parse_dsn
from cdc_repair.db.sql import quote_ident, quote_table


def test_parse_full_dsn_and_mask() -> None:
    dsn = parse_dsn("mysql://cdc%40app:p%40ss:w@db.internal:3307/cdc_repair?ssl=1")
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.database) == ("cdc@app", "p@ss:w", "db.internal", 3307,
                                                                          "cdc_repair")
    assert dsn.options == (("ssl", "1"),)
    assert str(dsn) == dsn.masked() == "mysql://cdc%40app:***@db.internal:3307/cdc_repair"
    assert "p@ss" not in repr(dsn)
    assert parse_dsn(dsn.to_url()) == dsn


@pytest.mark.parametrize(("text", "reason"), [
    ("postgres://u:p@h/", "unsupported scheme 'postgres'"),
    ("mysql://u:p@:3306/", "DSN has no host"),
    ("mysql://u:p@h:99999/", "not a valid DSN"),
    ("localhost:3306", "unsupported scheme"),
])
def test_bad_dsns_explain_the_form(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_dsn(text)
    assert "expected mysql://" in str(info.value)


def test_mask_in_free_text() -> None:
    text = "failed: mysql+pymysql://root:hunter2@10.0.0.1:3306/x and mysql://a:b@c/"
    assert mask(text) == "failed: mysql+pymysql://root:***@10.0.0.1:3306/x and mysql://a:***@c/"


def test_identifiers_are_validated_and_quoted() -> None:
    assert quote_table("webook_author.articles") == "`webook_author`.`articles`"
    for bad in ("a`b", "x; DROP TABLE y", "", "a b"):
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            quote_ident(bad)
