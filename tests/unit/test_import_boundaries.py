"""Each third-party I/O library is imported by one place only (style rule 2), so its quirks stay contained."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cdc_repair"

# library → the module paths (relative to cdc_repair/) or folder prefixes allowed to import it
ALLOWED: dict[str, tuple[str, ...]] = {
    "pymysqlreplication": ("source/binlog_reader.py",),
    "kafka": ("sink/", "devservices/broker.py"),
    "pymysql": ("db/mysql.py", "devservices/mariadb.py"),
    "prometheus_client": ("metrics.py",),
    "sqlalchemy": ("state/",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_io_libraries_are_imported_only_by_their_adapter() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for lib in _imports(path) & ALLOWED.keys():
            if not any(rel == allowed or (allowed.endswith("/") and rel.startswith(allowed))
                       for allowed in ALLOWED[lib]):
                offenders.append(f"{rel} imports {lib} (allowed only in {', '.join(ALLOWED[lib])})")
    assert offenders == []
