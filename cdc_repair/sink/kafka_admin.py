"""Kafka admin: reachability and topic creation (kafka-python is imported only under `sink/`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cdc_repair.errors import TransientError


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


def ensure_topics(bootstrap: Sequence[str], names: Sequence[str], partitions: int,
                  replication_factor: int) -> list[str]:
    """Create the topics that do not exist yet (idempotent), with `partitions` each.

    Returns one line per existing topic whose partition count differs from `partitions`, naming both counts and
    the fix (the caller logs it): capture partitions by the topic's real count, so such a topic works, but it
    is not what the config says (e.g. auto-created with the broker's default, often 1, so validators cannot
    scale out).
    """
    if not any(tcp_open(addr) for addr in bootstrap):
        raise TransientError(f"no Kafka broker answers at {', '.join(bootstrap)} (is it running?)")
    try:
        admin = KafkaAdminClient(bootstrap_servers=list(bootstrap), request_timeout_ms=10000)
    except (KafkaError, OSError) as exc:
        raise TransientError(f"no Kafka broker answers at {', '.join(bootstrap)} ({type(exc).__name__})") from None
    try:
        return _ensure(admin, names, partitions, replication_factor)
    except KafkaError as exc:  # e.g. no CREATE permission (ACLs): the caller says so in one line
        raise TransientError(f"cannot create or describe Kafka topics {', '.join(names)}: {type(exc).__name__} "
                             f"(with ACLs, grant CREATE and DESCRIBE on them or create them beforehand)") from None
    finally:
        admin.close()


def _ensure(admin: KafkaAdminClient, names: Sequence[str], partitions: int, replication_factor: int) -> list[str]:
    existing = set(admin.list_topics())
    missing = [NewTopic(n, partitions, replication_factor) for n in names if n not in existing]
    if missing:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(missing)
    present = [n for n in names if n in existing]
    counts = {t["name"]: len(t.get("partitions") or []) for t in admin.describe_topics(present)} if present else {}
    return [partition_mismatch(name, found, partitions) for name, found in sorted(counts.items())
            if found and found != partitions]


def partition_mismatch(topic: str, found: int, configured: int) -> str:
    return (f"Kafka topic {topic} has {found} partitions, kafka.partitions is {configured}: capture uses the "
            f"topic's {found} and at most {found} validators share the work; set kafka.partitions: {found}, or "
            f"add partitions to the topic (kafka-topics.sh --alter --partitions {configured}) while capture is "
            f"stopped, since keys move to other partitions")


def tcp_open(address: str, timeout_s: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
