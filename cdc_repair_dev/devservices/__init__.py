"""Embedded development services (throwaway MariaDB with binlog, tansu Kafka-protocol broker).

Shared by tests (pytest fixtures), benchmarks, the demo and `cdc-repair dev up|down|status`.
"""
