"""Kafka side: FlatMessage codec, partitioning, and the only modules that import the Kafka client."""
