"""Read a YAML config file defensively: one line per problem, never a traceback and never a hang.

PyYAML's safe loader still accepts what makes a config dangerous to *use*: a self-referencing anchor (the
structure is infinite, so walking it recurses forever), an alias bomb (a few lines expanding to billions of
values), and duplicate keys (the last one silently wins). The composed node graph is checked before anything
is constructed from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cdc_repair.errors import ConfigError

MAX_VALUES = 100_000  # a real config has hundreds; an alias bomb has billions


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
