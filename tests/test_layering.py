"""Imports point down: the layering of docs/architecture.md, checked on every module's top-level imports.

Function-level imports are allowed to reach elsewhere on purpose (the checkpoint allowlists import the
package's classes by fixed names on first use; the reduced-model file format asks them for its problem
classes); module-level ones decide the import graph and must follow the table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "surrogates"

ALLOWED = {
    "errors": set(),
    "arguments": set(),
    "schema": set(),
    "metrics": set(),
    "nn": {"errors", "arguments", "schema"},
    "solvers": {"errors", "arguments", "schema"},
    "pdes": {"solvers", "errors", "arguments", "schema"},
    "data": {"pdes", "solvers", "nn", "errors", "arguments", "schema"},
    "checkpoint": {"errors", "arguments", "schema"},
    "models": {"nn", "pdes", "data", "errors", "arguments", "schema"},
    "plots": {"metrics", "schema"},
    "evaluation": {"data", "plots", "metrics", "errors", "arguments", "schema"},
    "tasks": {"models", "nn", "data", "pdes", "checkpoint", "evaluation", "plots", "metrics", "errors", "arguments", "schema"},
    "serve": {"tasks", "models", "nn", "data", "checkpoint", "evaluation", "plots", "metrics", "errors", "arguments", "schema"},
    "cli": {"serve", "tasks", "models", "nn", "data", "pdes", "solvers", "checkpoint", "evaluation", "plots", "metrics", "errors", "arguments", "schema"},
}
"""Layer -> the layers its modules may import at module level (besides itself)."""


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("surrogates.")]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts != ("__init__.py",))


def test_every_layer_is_in_the_table():
    assert {_layer(p) for p in MODULES} <= set(ALLOWED), "a new top-level package: add it to ALLOWED and to docs/architecture.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_down(path):
    layer = _layer(path)
    wrong = [
        f"line {line}: {name}"
        for line, name in _module_level_imports(path)
        if (target := name.split(".")[1]) != layer and target not in ALLOWED[layer]
    ]
    assert not wrong, f"{layer} may import {sorted(ALLOWED[layer])}; {path.name} imports {wrong}"
