"""What the binlog reader hands to the tailer (pure values; no library types leak out of binlog_reader.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cdc_repair.model.position import BinlogPosition
from cdc_repair.source.decoder import RowDecoder
from cdc_repair.source.statements import StatementDml


@dataclass(slots=True)
class RowsData:
    """One rows event of an included table: the undecoded body slice and the table's compiled plan.

    `kind` is INSERT / UPDATE / DELETE. Rows are decoded on demand (`decoder.images(body, start, end)`), so a
    filtered or skipped event costs nothing.
    """

    kind: str
    decoder: RowDecoder
    body: bytes
    start: int
    end: int
    timestamp: int  # event header time, epoch seconds


@dataclass(frozen=True, slots=True)
class Gtid:
    """Start of a transaction (or DDL) with its GTID (MariaDB `d-s-n` or MySQL `uuid:n`)."""

    gtid: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class Commit:
    """End of a transaction: `position` is where the next one starts, a safe resume point."""

    position: BinlogPosition
    timestamp: int


@dataclass(frozen=True, slots=True)
class Ddl:
    """A statement that changes schema (its own transaction); `position` is the boundary after it."""

    schema: str
    sql: str
    position: BinlogPosition
    timestamp: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The server had nothing more to send: the reader is caught up."""

    file: str
    pos: int


@dataclass(frozen=True, slots=True)
class Rotate:
    """The server switched binlog files; `position` is (new file, offset)."""

    position: BinlogPosition


@dataclass(frozen=True, slots=True)
class StatementRows:
    """DML logged as SQL text (binlog_format STATEMENT, or MIXED): its rows are not in the binlog."""

    schema: str  # the statement's default database
    sql: str
    dml: StatementDml
    timestamp: int


@dataclass(frozen=True, slots=True)
class PartialRows:
    """Changes of an included table the binlog holds in a form capture cannot read: rows events without full row
    images (`setting` binlog_row_image MINIMAL or NOBLOB), or compressed events (`setting` log_bin_compress on
    MariaDB, binlog_transaction_compression on MySQL; `table` "*" when only the schema is known, `database` "?"
    when not even that)."""

    database: str
    table: str
    kind: str
    timestamp: int
    setting: str = "binlog_row_image"


SourceEvent = RowsData | Gtid | Commit | Ddl | Heartbeat | Rotate | StatementRows | PartialRows
