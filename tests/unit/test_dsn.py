"""DSN parsing and masking: passwords never survive into text meant for people."""

from __future__ import annotations

import pytest

from cdc_repair.db.dsn import TlsMode, mask, parse_dsn
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


@pytest.mark.parametrize("password", ["Secret99@x", "p@Secret99", "my secret pw", "a:b@c d", "x/y#z?"])
def test_mask_hides_every_form_of_password(password: str) -> None:
    """Passwords pasted unescaped (with `@`, spaces, `:`) never survive into messages, nor their pieces."""
    raw = f"config error: state.dsn: bad value mysql://root:{password}@db.internal:3306/cdc_repair (got it)"
    shown = mask(raw)
    assert password not in shown
    for piece in password.replace("@", " ").replace(":", " ").replace("/", " ").split():
        if len(piece) >= 3:
            assert piece not in shown, shown
    assert "db.internal:3306/cdc_repair" in shown


def test_mask_hides_known_passwords_outside_urls() -> None:
    dsn = parse_dsn("mysql://root:S3cr%20et%40pw@h:3306/x")
    assert mask(f"Access denied (using password: {dsn.password})") == "Access denied (using password: ***)"


def test_port_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="port 0"):
        parse_dsn("mysql://u:p@h:0/db")


def test_bad_port_message_does_not_quote_the_password() -> None:
    with pytest.raises(ValueError) as info:
        parse_dsn("mysql://root:Zq9/xK4@h:3306/db")  # an unescaped '/' ends the authority early
    assert "Zq9" not in str(info.value) and "xK4" not in str(info.value)


@pytest.mark.parametrize(("query", "mode", "ca"), [
    ("", TlsMode.PREFERRED, None),
    ("?ssl=false", TlsMode.DISABLED, None),
    ("?ssl=1", TlsMode.REQUIRED, None),
    ("?ssl=required", TlsMode.REQUIRED, None),
    ("?ssl_mode=VERIFY_IDENTITY&ssl_ca=/etc/ca.pem", TlsMode.VERIFY_IDENTITY, "/etc/ca.pem"),
    ("?ssl-mode=verify_ca&ssl_ca=/etc/ca.pem", TlsMode.VERIFY_CA, "/etc/ca.pem"),
    ("?ssl_ca=/etc/ca.pem", TlsMode.VERIFY_CA, "/etc/ca.pem"),
    ("?ssl_ca=/etc/ca.pem&ssl_verify_identity=true", TlsMode.VERIFY_IDENTITY, "/etc/ca.pem"),
    ("?sslmode=preferred", TlsMode.PREFERRED, None),
])
def test_tls_options(query: str, mode: TlsMode, ca: str | None) -> None:
    tls = parse_dsn(f"mysql://u:p@h:3306/db{query}").tls
    assert (tls.mode, tls.ca) == (mode, ca)


@pytest.mark.parametrize(("query", "reason"), [
    ("?sslca=/x", "unknown DSN option 'sslca'"),
    ("?charset=latin1", "unknown DSN option 'charset'"),
    ("?ssl_mode=sometimes", "ssl_mode='sometimes' is not one of"),
    ("?ssl=maybe", "ssl='maybe' must be"),
    ("?ssl_cert=/c.pem", "ssl_cert and ssl_key go together"),
    ("?ssl_mode=disabled&ssl_ca=/x", "disables TLS"),
])
def test_unknown_or_contradictory_tls_options_are_refused(query: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_dsn(f"mysql://u:p@h:3306/db{query}")
