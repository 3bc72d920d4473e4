"""Which tables capture publishes: include/exclude glob patterns on `schema.table` (pure)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from cdc_repair.db.dsn import Dsn

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class TableMatcher:
    """`include` then `exclude`, glob patterns (`*`, `?`, `[..]`) on `schema.table`, case-insensitive."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = [p.lower() for p in include] or ["*.*"]
        self.exclude = [p.lower() for p in exclude]
        self._cache: dict[tuple[str, str], bool] = {}

    def __call__(self, schema: str, table: str) -> bool:
        key = (schema, table)
        hit = self._cache.get(key)
        if hit is None:
            name = f"{schema}.{table}".lower()
            hit = any(fnmatchcase(name, p) for p in self.include) and not any(
                fnmatchcase(name, p) for p in self.exclude)
            self._cache[key] = hit
        return hit

    def schema_included(self, schema: str) -> bool:
        """Some included pattern could match a table of this schema, and no `schema.*` exclude drops them all
        (for database-level DDL)."""
        s = schema.lower()
        return any(fnmatchcase(s, p.split(".", 1)[0]) for p in self.include) and not any(
            p.endswith(".*") and fnmatchcase(s, p[:-2]) for p in self.exclude)

    def only_schemas(self) -> list[str] | None:
        """The literal schema names when no include pattern has a wildcard in its schema part (else None)."""
        schemas = [p.split(".", 1)[0] for p in self.include]
        if any(ch in s for s in schemas for ch in "*?[") or not all("." in p for p in self.include):
            return None
        return sorted(set(schemas))


def own_state_exclude(state: Dsn, server: Dsn) -> list[str]:
    """`["<state db>.*"]` when the state schema lives on the captured server (same address and port; a host name
    and an IP of one machine are not recognised), else `[]`: cdc-repair's own bookkeeping is never published."""

    def where(d: Dsn) -> tuple[str, int]:
        host = d.host.lower()
        return ("loopback" if host in _LOOPBACK else host, d.port)

    return [f"{state.database}.*"] if state.database and where(state) == where(server) else []
