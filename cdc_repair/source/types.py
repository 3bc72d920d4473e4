"""MySQL binlog column types → Canal's `mysqlType` text and `sqlType` (java.sql.Types) codes (pure).

The binlog does not carry integer display widths; `mysqlType` uses the MariaDB/MySQL 5.7 defaults
(`bigint(20)`, `int(11)`, `int(10) unsigned`, ...). String lengths come from the TableMap metadata in bytes and
are divided by the charset's maximum bytes per character, as `SHOW CREATE TABLE` would show them.
"""

from __future__ import annotations

# MySQL binlog field types (include/mysql_com.h enum_field_types)
DECIMAL = 0
TINY = 1
SHORT = 2
LONG = 3
FLOAT = 4
DOUBLE = 5
NULL = 6
TIMESTAMP = 7
LONGLONG = 8
INT24 = 9
DATE = 10
TIME = 11
DATETIME = 12
YEAR = 13
NEWDATE = 14
VARCHAR = 15
BIT = 16
TIMESTAMP2 = 17
DATETIME2 = 18
TIME2 = 19
JSON = 245
NEWDECIMAL = 246
ENUM = 247
SET = 248
TINY_BLOB = 249
MEDIUM_BLOB = 250
LONG_BLOB = 251
BLOB = 252
VAR_STRING = 253
STRING = 254
GEOMETRY = 255

INTEGER_TYPES = frozenset({TINY, SHORT, INT24, LONG, LONGLONG})

# java.sql.Types
J_BIT, J_TINYINT, J_SMALLINT, J_INTEGER, J_BIGINT = -7, -6, 5, 4, -5
J_REAL, J_DOUBLE, J_DECIMAL, J_CHAR, J_VARCHAR = 7, 8, 3, 1, 12
J_DATE, J_TIME, J_TIMESTAMP, J_BLOB, J_CLOB, J_BINARY = 91, 92, 93, 2004, 2005, -2

_INT_NAMES = {TINY: ("tinyint", 4, 3), SHORT: ("smallint", 6, 5), INT24: ("mediumint", 9, 8),
              LONG: ("int", 11, 10), LONGLONG: ("bigint", 20, 20)}
_INT_SQL = {TINY: J_TINYINT, SHORT: J_SMALLINT, INT24: J_INTEGER, LONG: J_INTEGER, LONGLONG: J_BIGINT}
# Canal widens an unsigned integer's sqlType by one level when a value exceeds the signed maximum.
UNSIGNED_WIDENED_SQL = {TINY: J_SMALLINT, SHORT: J_INTEGER, INT24: J_INTEGER, LONG: J_BIGINT, LONGLONG: J_DECIMAL}
SIGNED_MAX = {TINY: 127, SHORT: 32767, INT24: 8388607, LONG: 2147483647, LONGLONG: 9223372036854775807}
_BLOB_PREFIX = {1: "tiny", 2: "", 3: "medium", 4: "long"}


def chars_per_byte_divisor(collation: str | None) -> int:
    """Maximum bytes per character of a collation's charset (to turn binlog byte lengths into chars)."""
    if not collation:
        return 1
    name = collation.split("_", 1)[0].lower()
    return {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "utf16": 4, "utf16le": 4, "utf32": 4, "ucs2": 2, "gbk": 2,
            "big5": 2, "gb2312": 2, "sjis": 2, "cp932": 2, "ujis": 3, "eucjpms": 3, "euckr": 2,
            "gb18030": 4}.get(name, 1)


def mysql_type_name(type_code: int, *, unsigned: bool = False, binary: bool = False, max_length: int = 0,
                    length_size: int = 0, precision: int = 0, decimals: int = 0, fsp: int = 0, bits: int = 0,
                    size: int = 0, values: tuple[str, ...] = (), collation: str | None = None) -> str:
    """The column type as Canal's `mysqlType` shows it (lower case, with parameters)."""
    if type_code in _INT_NAMES:
        name, signed_width, unsigned_width = _INT_NAMES[type_code]
        return f"{name}({unsigned_width}) unsigned" if unsigned else f"{name}({signed_width})"
    if type_code in (FLOAT, DOUBLE):
        base = "float" if type_code == FLOAT else "double"
        return f"{base} unsigned" if unsigned else base
    if type_code in (NEWDECIMAL, DECIMAL):
        return f"decimal({precision},{decimals})" + (" unsigned" if unsigned else "")
    if type_code in (VARCHAR, VAR_STRING):
        return f"varbinary({max_length})" if binary else f"varchar({max_length // chars_per_byte_divisor(collation)})"
    if type_code == STRING:
        return f"binary({max_length})" if binary else f"char({max_length // chars_per_byte_divisor(collation)})"
    if type_code in (BLOB, TINY_BLOB, MEDIUM_BLOB, LONG_BLOB):
        return _BLOB_PREFIX.get(length_size, "") + ("blob" if binary else "text")
    if type_code in (DATETIME2, DATETIME):
        return f"datetime({fsp})" if fsp else "datetime"
    if type_code in (TIMESTAMP2, TIMESTAMP):
        return f"timestamp({fsp})" if fsp else "timestamp"
    if type_code in (TIME2, TIME):
        return f"time({fsp})" if fsp else "time"
    if type_code in (DATE, NEWDATE):
        return "date"
    if type_code == YEAR:
        return "year(4)"
    if type_code in (ENUM, SET):
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        return f"{'enum' if type_code == ENUM else 'set'}({quoted})"
    if type_code == BIT:
        return f"bit({bits})"
    if type_code == JSON:
        return "json"
    if type_code == GEOMETRY:
        return "geometry"
    return f"type{type_code}"


def java_sql_type(type_code: int, *, binary: bool = False) -> int:
    """Canal's `sqlType` (java.sql.Types) for a column (unsigned widening is per value: UNSIGNED_WIDENED_SQL)."""
    if type_code in _INT_SQL:
        return _INT_SQL[type_code]
    table = {
        FLOAT: J_REAL, DOUBLE: J_DOUBLE, NEWDECIMAL: J_DECIMAL, DECIMAL: J_DECIMAL,
        DATETIME2: J_TIMESTAMP, DATETIME: J_TIMESTAMP, TIMESTAMP2: J_TIMESTAMP, TIMESTAMP: J_TIMESTAMP,
        TIME2: J_TIME, TIME: J_TIME, DATE: J_DATE, NEWDATE: J_DATE, YEAR: J_VARCHAR,
        ENUM: J_INTEGER, SET: J_BIT, BIT: J_BIT, JSON: J_VARCHAR, GEOMETRY: J_BLOB,
    }
    if type_code in table:
        return table[type_code]
    if type_code in (VARCHAR, VAR_STRING):
        return J_BLOB if binary else J_VARCHAR
    if type_code == STRING:
        return J_BLOB if binary else J_CHAR
    if type_code in (BLOB, TINY_BLOB, MEDIUM_BLOB, LONG_BLOB):
        return J_BLOB if binary else J_CLOB
    return J_VARCHAR


# ---------------------------------------------------------------- declared column types (Canal's mysqlType)

# information_schema DATA_TYPE values each binlog type can be declared as
_DECLARED_FAMILY: dict[int, frozenset[str]] = {
    TINY: frozenset({"tinyint"}), SHORT: frozenset({"smallint"}), INT24: frozenset({"mediumint"}),
    LONG: frozenset({"int"}), LONGLONG: frozenset({"bigint"}), FLOAT: frozenset({"float"}),
    DOUBLE: frozenset({"double"}), YEAR: frozenset({"year"}),
    BLOB: frozenset({"tinyblob", "blob", "mediumblob", "longblob", "tinytext", "text", "mediumtext", "longtext",
                     "json"}),
    JSON: frozenset({"json"}),
    GEOMETRY: frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                         "multipolygon", "geometrycollection"}),
}
for _code in (TINY_BLOB, MEDIUM_BLOB, LONG_BLOB):
    _DECLARED_FAMILY[_code] = _DECLARED_FAMILY[BLOB]
# Numeric types whose declared text carries what the binlog does not (display width, ZEROFILL, (M,D)).
_SIGNED_FAMILIES = frozenset({TINY, SHORT, INT24, LONG, LONGLONG, FLOAT, DOUBLE})


def declared_mysql_types(columns: tuple[tuple[str, int, bool, str], ...],
                         declared: list[tuple[str, str, str]]) -> dict[str, str] | None:
    """Canal's `mysqlType` (the declared column type, e.g. `tinyint(1)`, `int(6) unsigned zerofill`,
    `double(10,2)`, `point`) when `declared` still describes the row's TableMap, else None.

    `columns`: (name, binlog type code, unsigned, type derived from the TableMap) per column of the row.
    `declared`: (COLUMN_NAME, DATA_TYPE, COLUMN_TYPE) per column from information_schema, in ordinal order.
    They must agree on column count, names, type family and signedness, and, where the binlog carries them,
    lengths, precision, fractional digits and ENUM/SET members (information_schema shows the table *now*: after a
    later ALTER it describes another schema version, and then None makes the caller keep the derived types).
    """
    if len(columns) != len(declared):
        return None
    out: dict[str, str] = {}
    for (name, code, unsigned, derived), (d_name, d_type, d_column_type) in zip(columns, declared, strict=True):
        column_type = d_column_type.lower()
        if name.lower() != d_name.lower():
            return None
        family = _DECLARED_FAMILY.get(code)
        if family is not None:
            if d_type.lower() not in family:
                return None
            if code in _SIGNED_FAMILIES and ("unsigned" in column_type.split()) != unsigned:
                return None
        elif column_type != derived.lower():
            return None
        out[name] = d_column_type
    return out
