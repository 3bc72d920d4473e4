"""Kafka admin: reachability and topic creation (kafka-python is imported only under `sink/`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


def broker_reachable(bootstrap: Sequence[str], timeout_ms: int = 5000) -> str | None:
    """None when a broker answers a metadata request; else a one-line reason naming the address."""
    if not any(tcp_open(addr) for addr in bootstrap):  # fail in ~1 s instead of the client's long timeout
        return f"no Kafka broker answers at {', '.join(bootstrap)} (connection refused or timed out; is it running?)"
    try:
        admin = KafkaAdminClient(bootstrap_servers=list(bootstrap), request_timeout_ms=timeout_ms)
    except (KafkaError, OSError, ValueError) as exc:
        return f"no Kafka broker answers at {', '.join(bootstrap)} ({type(exc).__name__}; is it running?)"
    try:
        admin.list_topics()
        return None
    except (KafkaError, OSError) as exc:
        return f"Kafka broker at {', '.join(bootstrap)} did not answer metadata ({type(exc).__name__})"
    finally:
        admin.close()


def ensure_topics(bootstrap: Sequence[str], names: Sequence[str], partitions: int, replication_factor: int) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=list(bootstrap), request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, replication_factor) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


def tcp_open(address: str, timeout_s: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
