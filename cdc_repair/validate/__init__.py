"""Validation: rules (pure), per-key check, full/window scans, the incremental Kafka consumer."""
