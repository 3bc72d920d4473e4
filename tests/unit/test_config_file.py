"""Hostile or broken config files get one line naming the problem and the fix: no traceback, no hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_repair.config import load_settings
from cdc_repair.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    (problem,) = info.value.problems
    assert "\n" not in problem
    return problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"servers:\n  author: {dsn: 'mysql://r@h/\xe9t\xe9'}\n")
    assert "line 2: the file is not UTF-8 text (byte 0xe9); save it as UTF-8" in _problem(path)


def test_self_referencing_anchor(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("servers: &s\n  author: *s\n")
    assert "line 1: a YAML anchor refers to itself" in _problem(path)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "expands to more than 100,000 values" in _problem(path)


def test_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  partitions: 3\n  partitions: 1\n")
    assert "line 3: duplicate key 'partitions' (first at line 2)" in _problem(path)


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("servers:\n  author:\n    dsn:", "servers:\n  author: &srv\n    dsn:", 1)
    text = text.replace("  online:\n    dsn: ", "  online:\n    <<: *srv\n    dsn: ", 1)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_settings(path, {}).servers["online"].dsn.host == "127.0.0.1"
