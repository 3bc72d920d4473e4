"""Read a YAML config file defensively, and make its raw mapping: `${VAR}` references and `CDC_REPAIR_*`
environment overrides applied (override values are parsed as YAML scalars). One line per problem, never a
traceback and never a hang.

PyYAML's safe loader still accepts what makes a config dangerous to *use*: a self-referencing anchor (the
structure is infinite, so walking it recurses forever), an alias bomb (a few lines expanding to billions of
values), and duplicate keys (the last one silently wins). The composed node graph is checked before anything
is constructed from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cdc_repair.errors import ConfigError

MAX_VALUES = 100_000  # a real config has hundreds; an alias bomb has billions
ENV_PREFIX = "CDC_REPAIR_"
_ENV_RESERVED = ("CDC_REPAIR_CONFIG", "CDC_REPAIR_DEV_")
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def raw_config(path: Path, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    """The file's mapping with `${VAR}` references replaced and `CDC_REPAIR_*` overrides applied, and the
    problems found doing so (a variable not set, an override with no place in the config)."""
    problems: list[str] = []
    raw = _interpolate(read_yaml(path), env, "", problems)
    _apply_env_overrides(raw, env, problems)
    return raw, problems


def read_yaml(path: Path) -> Any:
    """The file's YAML document (or {} when empty); raise ConfigError with one line naming the problem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found (pass --config PATH or set CDC_REPAIR_CONFIG)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror})"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                           "save it as UTF-8"]) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> Any:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            _check_graph(node, name)
            return loader.construct_document(node) or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{name}:{where}: invalid YAML: {reason}"]) from None


def _check_graph(root: yaml.Node, name: str) -> None:
    """Refuse cycles, duplicate keys and documents that expand past MAX_VALUES (counting each alias use)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError([f"{name}: line {node.start_mark.line + 1}: a YAML anchor refers to itself "
                               "(the value would be infinite); remove the recursive alias"])
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, name)
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise ConfigError([f"{name}: the YAML expands to more than {MAX_VALUES:,} values through its "
                                   "aliases (an alias bomb?); write the config out without nested aliases"])
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _check_duplicate_keys(node: yaml.MappingNode, name: str) -> None:
    seen: dict[str, int] = {}
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise ConfigError([f"{name}: line {line}: duplicate key '{key_node.value}' (first at line "
                               f"{seen[key_node.value]}); keep one of them"])
        seen[key_node.value] = line


def _interpolate(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m["name"], m["default"]
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '(top level)'}: environment variable ${{{name}}} is not set "
                            f"(export it, or write ${{{name}:-default}})")
            return ""
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _apply_env_overrides(raw: Any, env: Mapping[str, str], problems: list[str]) -> None:
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(_ENV_RESERVED):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        if not _set_path(raw, parts, value):
            problems.append(f"{'.'.join(parts)}: cannot apply environment override {name} "
                            f"(no such place in the config; use {ENV_PREFIX}SECTION__KEY)")


def _set_path(node: Any, parts: list[str], value: Any) -> bool:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return False
            if last:
                node[int(part)] = value
                return True
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return True
            node = node.setdefault(part, {})
        else:
            return False
    return False
