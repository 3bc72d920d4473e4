"""Pure values shared across stages: binlog positions, table schemas, row changes (no I/O, no libraries)."""
