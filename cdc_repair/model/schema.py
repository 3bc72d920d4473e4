"""Table schema as the binlog describes it (TableMap + FULL metadata): pure values, no library types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column at event time. `charset` is a Python codec name, None for binary data.

    `params` holds the binlog type metadata needed to decode values: max length / length-prefix size,
    (precision, decimals), fractional-second digits, bit count, enum/set value names.
    """

    name: str
    type_code: int  # MySQL binlog field type (FIELD_TYPE)
    mysql_type: str  # e.g. "bigint(20)", "varchar(255)", "decimal(10,2)" as Canal shows it
    sql_type: int  # java.sql.Types code as Canal fills it
    unsigned: bool = False
    is_pk: bool = False
    charset: str | None = "utf8"
    max_length: int = 0
    length_size: int = 0
    precision: int = 0
    decimals: int = 0
    fsp: int = 0
    bits: int = 0
    size: int = 0
    values: tuple[str, ...] = ()  # ENUM / SET names (ENUM index 1 is values[0])


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table at event time, as identified by its binlog table id."""

    table_id: int
    database: str
    table: str
    columns: tuple[ColumnSpec, ...]

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pk_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_pk)

    @property
    def pk_indexes(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.columns) if c.is_pk)
