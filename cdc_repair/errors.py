"""Every error the service raises: transient (retry with backoff) or terminal (stop, tell the operator).

Messages are one line and name the thing and the fix; they never contain a password (see `db.dsn.mask`).
"""

from __future__ import annotations


class CdcRepairError(Exception):
    """Base of every error raised on purpose by cdc-repair."""


class TransientError(CdcRepairError):
    """May succeed if retried later (broker down, lock wait, server restarting)."""


class TerminalError(CdcRepairError):
    """Retrying will not help; an operator must act (bad config, wrong server settings, dirty row)."""


class ConfigError(TerminalError):
    """The configuration is invalid; `problems` holds one line per problem, each naming its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ServerSettingsError(TerminalError):
    """The MySQL server is not set up for capture (binlog off, not ROW/FULL/FULL, missing privilege)."""


class UnreachableError(TransientError):
    """A server or broker does not answer; the message says which (DSN masked) and for how long."""


class BinlogPurgedError(TerminalError):
    """The checkpoint points into a binlog the server no longer has."""


class SchemaDriftError(TerminalError):
    """Row data does not match the known table schema (column count, missing metadata)."""


class MalformedMessageError(TerminalError):
    """A Kafka message is not a valid FlatMessage; it goes to the dead-letter topic with this reason."""


class DevServiceError(TerminalError):
    """An embedded development service (MariaDB, broker) could not be installed or started."""


class BinlogUnavailableError(TerminalError):
    """A binlog range that compensation must re-read is no longer on the server (purged)."""
