"""TLS for every MySQL connection (queries, the state engine and the replication stream) from a DSN's options.

Modes as the MySQL client's `--ssl-mode` (PREFERRED by default, as there and in PyMySQL). One builder so the
three connection kinds cannot disagree: a DSN that asks for TLS gets it everywhere, or the
connection is refused with one line. PyMySQL silently falls back to plaintext when the server offers no TLS, so
`verify_tls_session` checks the session after connecting whenever the mode requires encryption.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

from cdc_repair.db.dsn import Dsn, TlsMode, TlsOptions
from cdc_repair.errors import TerminalError


def ssl_context(dsn: Dsn) -> ssl.SSLContext | None:
    """The SSLContext a DSN asks for, or None for the driver's default (PREFERRED) or plaintext (DISABLED).

    A missing or unreadable file is a TerminalError naming the option.
    """
    tls = dsn.tls
    if tls.mode in (TlsMode.DISABLED, TlsMode.PREFERRED):
        return None
    for label, path in (("ssl_ca", tls.ca), ("ssl_cert", tls.cert), ("ssl_key", tls.key)):
        if path is not None and not Path(path).is_file():
            raise TerminalError(f"{dsn.masked()}: DSN option {label} names '{path}', which is not a readable file")
    try:
        return _build(tls)
    except (ssl.SSLError, OSError) as exc:
        raise TerminalError(f"{dsn.masked()}: cannot load the TLS files ({exc}); check ssl_ca/ssl_cert/ssl_key") \
            from None


def _build(tls: TlsOptions) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    verify = tls.mode in (TlsMode.VERIFY_CA, TlsMode.VERIFY_IDENTITY)
    if verify:
        if tls.ca:
            ctx.load_verify_locations(cafile=tls.ca)
        else:
            ctx.load_default_certs()
        ctx.check_hostname = tls.mode is TlsMode.VERIFY_IDENTITY
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:  # REQUIRED: encrypted, server not authenticated (the MySQL client's meaning)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        ctx.load_cert_chain(tls.cert, tls.key)
    return ctx


@functools.cache
def preferred_context() -> ssl.SSLContext:
    """PREFERRED mode's context: encrypted, server not authenticated (no CA store to load), built once."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def driver_tls_args(dsn: Dsn) -> dict[str, Any]:
    """Keyword arguments for `pymysql.connect` (and the replication library's connection settings)."""
    if dsn.tls.mode is TlsMode.DISABLED:
        return {"ssl_disabled": True}
    ctx = ssl_context(dsn)  # None for PREFERRED: PyMySQL's default already encrypts when the server offers TLS
    return {"ssl": ctx} if ctx is not None else {}


def verify_tls_session(dsn: Dsn, cipher: str | None) -> None:
    """Refuse a session that is not encrypted although the DSN requires it (`cipher` is the session's Ssl_cipher)."""
    if dsn.tls.required and not cipher:
        raise TerminalError(f"{dsn.masked()}: the DSN requires TLS (ssl_mode={dsn.tls.mode.value}) but the server "
                            "did not encrypt the connection; enable TLS on the server (ssl_cert/ssl_key) or change "
                            "ssl_mode")
