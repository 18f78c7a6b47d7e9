"""The import direction is app → gates → probes, never back (STYLE.md, SPEC §10)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("app", "gates", "probes")
# What each layer must not import.
FORBIDDEN = {"app": set(), "gates": {"app"}, "probes": {"gates", "app"}}


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """Top-level packages a module of ``package`` imports, with the line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside its own top-level package
                found.add((package, node.lineno))
            elif node.module:
                found.add((node.module.split(".")[0], node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add((node.args[0].value.split(".")[0], node.lineno))
    return found


def modules(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_has_modules(layer: str) -> None:
    assert modules(layer), f"no modules found under {layer}/"


@pytest.mark.parametrize("layer", ["gates", "probes"])
def test_lower_layers_do_not_import_upper_ones(layer: str) -> None:
    violations = [
        f"{path.relative_to(REPO)}:{line} imports {package}"
        for path in modules(layer)
        for package, line in sorted(imported_packages(path, layer))
        if package in FORBIDDEN[layer]
    ]
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The test above would catch a backwards import, plain or hidden in a function."""
    module = tmp_path / "late.py"
    module.write_text(
        "import importlib\n"
        "from . import base\n"
        "def late():\n"
        "    from app import cli\n"
        "    import gates.engine\n"
        "    importlib.import_module('app.main')\n",
        encoding="utf-8",
    )
    found = imported_packages(module, "probes")
    assert {p for p, _ in found} == {"importlib", "probes", "app", "gates"}
    assert ("app", 4) in found
