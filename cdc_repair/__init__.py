"""cdc-repair: keep two MySQL tables consistent through change data capture."""

__version__ = "0.1.0"
