"""MySQL DSN value: parse `mysql://user:password@host:port/database?opt=v`, and mask it for output (pure).

The query part carries only the TLS options below; any other option is refused, because a silently dropped
`?ssl=required` means a plaintext connection the user believes is encrypted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
_FORM = "expected mysql://user:password@host:port/database[?ssl_mode=...&ssl_ca=...]"
# `scheme://user:` then the password up to the first `@` that is followed by a host[:port] and the end of the
# authority: passwords may hold `@`, `:` or spaces when people paste them unescaped, and must never show.
_PASSWORD_IN_URL = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\n]*?)(?P<tail>@(?=[\w.\-\[\]:%]+(?:[/?#\s'\"),;]|$)))",
    re.IGNORECASE)
_MIN_SECRET_LEN = 4  # shorter "passwords" would mask ordinary words in messages


class TlsMode(Enum):
    """MySQL client `--ssl-mode` values, in increasing strictness."""

    DISABLED = "disabled"
    PREFERRED = "preferred"
    REQUIRED = "required"
    VERIFY_CA = "verify_ca"
    VERIFY_IDENTITY = "verify_identity"


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS for one server: the mode plus optional CA bundle and client certificate/key file paths."""

    mode: TlsMode = TlsMode.PREFERRED
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mode is not TlsMode.DISABLED

    @property
    def required(self) -> bool:
        """Whether a plaintext session must be refused (every mode stricter than PREFERRED)."""
        return self.mode not in (TlsMode.DISABLED, TlsMode.PREFERRED)


_TRUE = ("1", "true", "yes", "on", "required")
_FALSE = ("0", "false", "no", "off", "disabled")
_MODE_NAMES = {m.value: m for m in TlsMode}
KNOWN_OPTIONS = ("ssl_mode", "ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_identity")


def parse_tls(options: tuple[tuple[str, str], ...]) -> TlsOptions:
    """The TLS settings of a DSN's query options; raise ValueError naming an unknown option or bad value."""
    values: dict[str, str] = {}
    for raw_name, value in options:
        name = raw_name.strip().lower().replace("-", "_")
        name = "ssl_mode" if name == "sslmode" else name
        if name not in KNOWN_OPTIONS:
            raise ValueError(f"unknown DSN option '{raw_name}' (known: {', '.join(KNOWN_OPTIONS)}); {_FORM}")
        values[name] = value.strip()
    mode: TlsMode | None = None
    if "ssl_mode" in values:
        mode = _MODE_NAMES.get(values["ssl_mode"].lower())
        if mode is None:
            raise ValueError(f"DSN option ssl_mode='{values['ssl_mode']}' is not one of "
                             f"{', '.join(_MODE_NAMES)}")
    elif "ssl" in values:
        flag = values["ssl"].lower()
        if flag not in (*_TRUE, *_FALSE):
            raise ValueError(f"DSN option ssl='{values['ssl']}' must be true/required or false/disabled")
        mode = TlsMode.REQUIRED if flag in _TRUE else TlsMode.DISABLED
    if values.get("ssl_verify_identity", "").lower() in _TRUE:
        mode = TlsMode.VERIFY_IDENTITY
    ca, cert, key = (values.get(k) or None for k in ("ssl_ca", "ssl_cert", "ssl_key"))
    if mode is None:  # as the MySQL client: TLS when the server offers it; a CA asks for a verified server
        mode = TlsMode.VERIFY_CA if ca else TlsMode.REQUIRED if cert else TlsMode.PREFERRED
    if bool(cert) != bool(key):
        raise ValueError("DSN options ssl_cert and ssl_key go together (the client certificate and its key)")
    if mode is TlsMode.DISABLED and (ca or cert):
        raise ValueError("DSN sets ssl_ca/ssl_cert but disables TLS; drop ssl_mode=disabled or the files")
    return TlsOptions(mode, ca, cert, key)


@dataclass(frozen=True, slots=True)
class Dsn:
    """Where a MySQL server is and who to log in as. `password` is never part of `str()`."""

    host: str
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.masked()

    @property
    def tls(self) -> TlsOptions:
        return parse_tls(self.options)

    def masked(self) -> str:
        """The DSN with the password replaced by `***`: safe for logs and messages."""
        auth = quote(self.user, safe="") + (":***" if self.password else "")
        db = f"/{self.database}" if self.database else "/"
        return f"mysql://{auth}@{self.host}:{self.port}{db}"

    def with_database(self, database: str | None) -> Dsn:
        return Dsn(self.host, self.port, self.user, self.password, database, self.options)

    def to_url(self) -> str:
        """The full URL including the password: only for handing to a driver, never for output."""
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        db = f"/{self.database}" if self.database else "/"
        query = f"?{urlencode(self.options)}" if self.options else ""
        return f"mysql://{auth}@{self.host}:{self.port}{db}{query}"


def parse_dsn(text: str) -> Dsn:
    """Parse a DSN; raise ValueError with a one-line reason naming the expected form (never the password)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        # the library's own message may quote a piece of the password (a `/` or `#` in it ends the authority)
        raise ValueError(f"not a valid DSN (the port must be a number from 1 to 65535; percent-encode "
                         f"'/', '#', '?' and '@' in the password); {_FORM}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError(f"unsupported scheme '{parts.scheme or '(none)'}'; {_FORM}")
    if not parts.hostname:
        raise ValueError(f"DSN has no host; {_FORM}")
    if port == 0:
        raise ValueError(f"DSN port 0 is not a port (use 1-65535, or leave it out for 3306); {_FORM}")
    database = unquote(parts.path.lstrip("/")) or None
    if database and "/" in database:
        raise ValueError(f"DSN database '{database}' contains '/'; {_FORM}")
    options = tuple(parse_qsl(parts.query, keep_blank_values=True))
    parse_tls(options)  # refuse unknown options now, not at the first connection
    password = unquote(parts.password or "")
    remember_secret(password)
    return Dsn(
        host=parts.hostname,
        port=port if port is not None else 3306,
        user=unquote(parts.username or "root"),
        password=password,
        database=database,
        options=options,
    )


_SECRETS: set[str] = set()


def remember_secret(secret: str) -> None:
    """Record a password so `mask` hides it even where it appears outside a URL (e.g. in a driver's message).

    Process-wide on purpose: log filters and error printers run far from where the config was parsed.
    """
    if len(secret) >= _MIN_SECRET_LEN:
        _SECRETS.add(secret)


def mask(text: str) -> str:
    """Replace any `scheme://user:password@` password, and every known password, inside free text with `***`."""
    masked = _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in masked:
            masked = masked.replace(secret, "***")
        encoded = quote(secret, safe="")
        if encoded != secret and encoded in masked:
            masked = masked.replace(encoded, "***")
    return masked
