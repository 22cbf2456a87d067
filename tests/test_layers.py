"""Layers point down (docs/architecture.md): read from the source, every import, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
#: Packages and modules above the settings, stages, filters, tree and backends.
UPPER = ("condor.run", "condor.api", "condor.export", "condor.judge", "condor.report", "condor.train", "condor.cli")


def imports() -> list[tuple[str, str]]:
    """``(module, imported module)`` for every ``condor`` import in the package."""
    found = []
    for path in sorted((SOURCE / "condor").rglob("*.py")):
        module = ".".join(path.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(module, alias.name) for alias in node.names if alias.name.startswith("condor")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("condor"):
                found.append((module, node.module))
    return found


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_nothing_below_run_imports_run_or_anything_above_it():
    wrong = [(m, n) for m, n in imports() if m != "condor" and not within(m, UPPER) and within(n, UPPER)]
    assert wrong == [], wrong  # e.g. config.py reaching into run/ to read a shard spec


def test_nothing_below_the_cli_imports_it():
    wrong = [(m, n) for m, n in imports() if not within(m, ("condor.cli",)) and within(n, ("condor.cli",))]
    assert wrong == [], wrong
