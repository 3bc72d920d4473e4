"""MySQL DSN value: parse `mysql://user:password@host:port/database?opt=v`, and mask it for output (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z0-9+]+://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.IGNORECASE)


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
    """Parse a DSN; raise ValueError with a one-line reason naming the expected form."""
    form = "expected mysql://user:password@host:port/database"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid DSN ({exc}); {form}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError(f"unsupported scheme '{parts.scheme or '(none)'}'; {form}")
    if not parts.hostname:
        raise ValueError(f"DSN has no host; {form}")
    database = unquote(parts.path.lstrip("/")) or None
    if database and "/" in database:
        raise ValueError(f"DSN database '{database}' contains '/'; {form}")
    return Dsn(
        host=parts.hostname,
        port=port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
        options=tuple(parse_qsl(parts.query)),
    )


def mask(text: str) -> str:
    """Replace any `scheme://user:password@` password inside free text with `***`."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***{m['tail']}", text)
