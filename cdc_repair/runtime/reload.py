"""Live config reload (SIGHUP): validate the new file, apply what can change live, name what needs a restart.

`diff_settings(old, new)` is pure: it flattens both settings to dotted keys (`validator.settle_delay_s`,
`pairs[0].strategy`) and sorts every changed key into *live* (applied without restart) or *restart*.
Stages read live values through one shared `LiveSettings` holder (`.current`), so a reload is a single
reference swap plus callbacks (e.g. the scheduler re-creates its triggers, logging changes its level).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdc_repair.config import Settings, load_settings
from cdc_repair.errors import ConfigError

log = logging.getLogger(__name__)

# Keys (or key prefixes ending in '.') that running stages pick up without a restart.
LIVE_KEYS: tuple[str, ...] = (
    "validator.",            # settle delay, re-checks, batch size, full-scan chunking/throttling
    "repair.",               # rate limit, attempts, backoff, batch size, auto_repair, strategy
    "scheduler.",            # triggers are rebuilt on reload
    "log.level",
    "ha.lock_retry_s",
)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists → {dotted.key[i]: leaf}; an empty container is a leaf of its own."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def is_live(key: str) -> bool:
    return any(key.startswith(k) if k.endswith(".") else key == k for k in LIVE_KEYS)


def diff_settings(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """Changed keys, split into (live_keys, restart_keys), each sorted. Secrets never appear: only key names."""
    a = flatten(old.model_dump(mode="json"))
    b = flatten(new.model_dump(mode="json"))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
    return [k for k in changed if is_live(k)], [k for k in changed if not is_live(k)]


_MISSING = object()


class LiveSettings:
    """The shared holder stages read live-changeable values from: `live.current.validator.settle_delay_s`.

    `apply(new, live_keys)` swaps the reference (an atomic assignment) and calls the subscribers; only
    the live keys take effect, restart keys keep their old values until the process restarts.
    """

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.path = path
        self._current = settings
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Settings, list[str]], None]] = []
        self.generation = 0
        self.last_reload: dict[str, Any] | None = None

    @property
    def current(self) -> Settings:
        return self._current

    def subscribe(self, callback: Callable[[Settings, list[str]], None]) -> None:
        """`callback(new_settings, live_keys)` after every applied reload."""
        self._subscribers.append(callback)

    def apply(self, new: Settings, live_keys: list[str]) -> None:
        with self._lock:
            self._current = merge_live(self._current, new, live_keys)
            self.generation += 1
            current = self._current
        for callback in list(self._subscribers):
            try:
                callback(current, live_keys)
            except Exception:  # one bad subscriber must not block the others
                log.exception("reload subscriber failed")

    def reload(self, path: Path | None = None) -> tuple[list[str], list[str]] | None:
        """Load the file again; on success apply live keys and return (live, restart); on error keep the old."""
        target = path or self.path
        if target is None:
            raise ValueError("no config path to reload from")
        try:
            new = load_settings(target)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload rejected: %s", problem)
            log.error("config reload rejected (%d problem(s)); the running config is unchanged", len(exc.problems))
            self.last_reload = {"ok": False, "problems": exc.problems, "at": time.time()}
            return None
        live, restart = diff_settings(self._current, new)
        self.apply(new, live)
        self.last_reload = {"ok": True, "live": live, "restart": restart, "at": time.time()}
        if not live and not restart:
            log.info("config reloaded: no changes")
        if live:
            log.info("config reloaded: applied live: %s", ", ".join(live), extra={"live_keys": live})
        if restart:
            log.warning("config reloaded: these keys change only after a restart: %s", ", ".join(restart),
                        extra={"restart_keys": restart})
        return live, restart


def merge_live(old: Settings, new: Settings, live_keys: list[str]) -> Settings:
    """`old` with the live sections/keys of `new`: restart-only changes wait for a restart."""
    if not live_keys:
        return old
    updates: dict[str, Any] = {}
    for section in ("validator", "repair", "scheduler"):
        if any(k.startswith(section + ".") for k in live_keys):
            updates[section] = getattr(new, section)
    if "log.level" in live_keys:
        updates["log"] = old.log.model_copy(update={"level": new.log.level})
    if "ha.lock_retry_s" in live_keys:
        updates["ha"] = old.ha.model_copy(update={"lock_retry_s": new.ha.lock_retry_s})
    return old.model_copy(update=updates)
