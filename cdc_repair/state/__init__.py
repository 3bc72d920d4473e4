"""The service's own schema (state DSN): tables as SQLAlchemy Core metadata, and the engine factory."""
