"""The import graph docs/architecture.md draws, enforced.

1. Every third-party library the product (`cdc_repair/`) imports has one owner, a module or a folder (style
   rule 2), so its quirks stay contained; a new library fails here until it gets an owner. The exceptions are
   stated below with their reason, and an exception nobody needs any more fails too.
2. Layers: foundation (model/, db/, config, errors, ...) < adapters (sink/, state/) < stages (source/, validate/,
   repair/) < composition (preflight, runtime/, app, observe, web/, commands/, cli). A module imports its own
   group or a lower layer; stages do not import each other (data goes source → Kafka → validate → ledger →
   repair through sink/ and state/, never through an import). Issue 12 step 1 removed the known upward imports
   (shared values into model/, the binlog reader injected): the list is empty and may only stay so.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cdc_repair"

# library → the module paths (relative to cdc_repair/) or folders ("x/") allowed to import it
OWNERS: dict[str, tuple[str, ...]] = {
    "pymysql": ("db/mysql.py",),
    "pymysqlreplication": ("source/binlog_reader.py", "source/raw_events.py"),  # raw_events: its private map
    "kafka": ("sink/",),
    "sqlalchemy": ("state/",),
    "apscheduler": ("runtime/scheduler.py",),
    "prometheus_client": ("metrics.py",),
    "pydantic": ("config.py",),
    "yaml": ("config_file.py",),
    "click": ("cli.py", "commands/"),
    "rich": ("commands/",),
    "cdc_repair_dev": ("commands/demo.py", "commands/dev.py"),  # demo and test scaffolding, imported lazily
    "orjson": ("*",),  # a pure JSON codec (no I/O, no state): any module, like the standard library's json
}

# (module, library) imported outside the owner, and why
LIBRARY_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("source/binlog_reader.py", "pymysql"): "the replication library takes a PyMySQL connection factory "
                                            "(pymysql_wrapper) and raises PyMySQL's errors",
    ("config_checks.py", "apscheduler"): "cron expressions are checked when the config loads, by the parser "
                                         "the scheduler will use (lazy import)",
}

FOUNDATION = {"", "__init__", "errors", "model", "db", "config", "config_checks", "config_file", "log", "metrics",
              "checkpoint", "stage"}
ADAPTERS = {"sink", "state"}
STAGES = {"source", "validate", "repair"}
COMPOSITION = {"preflight", "runtime", "app", "observe", "web", "commands", "cli", "__main__"}
RANK = {**dict.fromkeys(FOUNDATION, 0), **dict.fromkeys(ADAPTERS, 1), **dict.fromkeys(STAGES, 2),
        **dict.fromkeys(COMPOSITION, 3)}

# (module, imported group): upward or sideways imports tolerated; issue 12 step 1 removed the last ones
KNOWN_UPWARD: set[tuple[str, str]] = set()


_BY_NAME = re.compile(r"^cdc_repair\.[a-z_]+(\.[a-z_]+)*\.?$")


def _modules() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(PACKAGE).as_posix(), ast.parse(p.read_text(encoding="utf-8")))
            for p in sorted(PACKAGE.rglob("*.py"))]


def _imported(tree: ast.Module) -> set[str]:
    """Absolute dotted names imported anywhere in the module (also inside functions and TYPE_CHECKING), and
    `"cdc_repair.x.y"` strings, which importlib loads by name: a by-name load is an import all the same."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _BY_NAME.match(node.value):
            if _is_module(node.value.split(".")[1]):
                names.add(node.value.rstrip("."))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cdc_repair":  # `from cdc_repair import metrics` names a module, `__version__` not
                names.update(f"cdc_repair.{alias.name}" for alias in node.names if _is_module(alias.name))
            else:
                names.add(node.module)
    return names


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def _third_party(tree: ast.Module) -> set[str]:
    tops = {name.split(".")[0] for name in _imported(tree)}
    return {t for t in tops if t not in sys.stdlib_module_names and t not in ("__future__", "cdc_repair")}


def _reached_through(tree: ast.Module) -> set[str]:
    """Owned libraries reached as an attribute of another library's module (`binlogstream.pymysql`)."""
    aliases = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id in aliases and node.attr in OWNERS}


def _owned_by(rel: str, owners: tuple[str, ...]) -> bool:
    return any(o == "*" or rel == o or (o.endswith("/") and rel.startswith(o)) for o in owners)


def _group(rel: str) -> str:
    return rel.split("/")[0] if "/" in rel else rel.removesuffix(".py")


def test_every_third_party_library_has_an_owner() -> None:
    unowned = sorted({f"{rel} imports {lib}" for rel, tree in _modules() for lib in _third_party(tree)
                      if lib not in OWNERS})
    assert unowned == [], "give each library one owner in OWNERS (and in docs/architecture.md)"


def test_libraries_are_imported_only_by_their_owner() -> None:
    used: set[tuple[str, str]] = set()
    offenders = []
    for rel, tree in _modules():
        for lib in (_third_party(tree) | _reached_through(tree)) & OWNERS.keys():
            if _owned_by(rel, OWNERS[lib]):
                continue
            if (rel, lib) in LIBRARY_EXCEPTIONS:
                used.add((rel, lib))
                continue
            offenders.append(f"{rel} imports {lib} (owned by {', '.join(OWNERS[lib])})")
    assert offenders == []
    assert set(LIBRARY_EXCEPTIONS) - used == set(), "an exception nobody needs any more: delete it"


def test_every_module_has_a_layer() -> None:
    assert sorted({_group(rel) for rel, _ in _modules()} - RANK.keys()) == []


def _upward_imports() -> set[tuple[str, str]]:
    found = set()
    for rel, tree in _modules():
        mine = _group(rel)
        for name in _imported(tree):
            parts = name.split(".")
            if parts[0] != "cdc_repair" or len(parts) < 2:
                continue
            theirs = parts[1]
            if theirs == mine or RANK.get(theirs, 0) < RANK[mine]:
                continue
            if RANK.get(theirs) == RANK[mine] and RANK[mine] != 2:  # peers share a layer, stages excepted
                continue
            found.add((rel, theirs))
    return found


def test_no_import_goes_up_a_layer_or_across_stages() -> None:
    new = sorted(f"{rel} imports {group}" for rel, group in _upward_imports() - KNOWN_UPWARD)
    assert new == [], "a lower layer may not import a higher one, nor a stage another stage (see docs/architecture.md)"


def test_model_imports_nothing_of_the_service_but_model() -> None:
    outside = sorted(f"{rel} imports {name}" for rel, tree in _modules() if rel.startswith("model/")
                     for name in _imported(tree) if name.startswith("cdc_repair") and
                     not name.startswith("cdc_repair.model"))
    assert outside == []


def test_the_known_upward_imports_only_shrink() -> None:
    assert KNOWN_UPWARD - _upward_imports() == set(), "fixed: delete it from KNOWN_UPWARD"


@pytest.mark.parametrize(("source", "expected"), [
    ("import pymysqlreplication.binlogstream as bs\nx = bs.pymysql\n", {"pymysql"}),
    ("import json\nx = json.kafka\n", {"kafka"}),
    ("settings = object()\nx = settings.kafka\n", set()),
])
def test_a_library_reached_through_another_counts_as_imported(source: str, expected: set[str]) -> None:
    assert _reached_through(ast.parse(source)) == expected


def test_a_module_loaded_by_name_counts_as_imported() -> None:
    tree = ast.parse('HISTORY = ("cdc_repair.source.history", "X")\nm = f"cdc_repair.commands.{n}"\n'
                     'log = "cdc_repair.run"\n')
    assert _imported(tree) == {"cdc_repair.source.history", "cdc_repair.commands"}


def _doc_layers() -> dict[str, set[str]]:
    """The layer diagram of docs/architecture.md: each row's first word is the layer, the rest its members."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows: dict[str, set[str]] = {}
    for line in doc.splitlines():
        words = line.split()
        if words and words[0] in {"composition", "stages", "adapters", "foundation"}:
            members = {w.rstrip("/") for w in words[1:] if re.fullmatch(r"[a-z_]+/?", w)}
            rows[words[0]] = members - {"may", "import", "anything", "below", "never", "each", "other"}
    return rows


def test_the_architecture_doc_draws_the_layers_this_test_enforces() -> None:
    """docs/architecture.md is the map a newcomer reads: its layer diagram names exactly the packages and
    modules each layer holds here, so the two cannot drift apart."""
    layers = _doc_layers()
    expected = {"composition": COMPOSITION - {"__main__"}, "stages": STAGES, "adapters": ADAPTERS,
                "foundation": FOUNDATION - {"", "__init__"}}
    assert layers == expected
