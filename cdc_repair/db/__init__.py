"""Database access: DSN values, SQL built as values, and the one module that imports the driver."""
