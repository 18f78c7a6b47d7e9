"""The import rules of docs/architecture.md: app → gates → probes, and app's folders by domain."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("app", "gates", "probes")
# What each layer must not import.
FORBIDDEN = {"app": set(), "gates": {"app"}, "probes": {"gates", "app"}}

# What each folder of app/ may import from app/ besides itself. The composition root
# (app/main.py, app/routes.py) and the CLI may import any service folder.
SERVICE = {"core", "observability", "coordination", "gates", "checks", "web", "integrations"}
APP_RULES: dict[str, set[str]] = {
    "core": set(),
    "observability": {"core"},
    "coordination": {"core", "observability"},
    "gates": {"core", "observability", "coordination"},
    "checks": {"core", "observability", "coordination", "gates"},
    "web": {"core", "observability", "gates", "checks"},
    "integrations": {"core", "observability", "gates", "checks"},
    "demo": set(),
    "main": SERVICE | {"routes"},
    "routes": SERVICE,
    "cli": SERVICE | {"main", "demo"},
}


def imported_modules(path: Path, package: str) -> set[tuple[str, int]]:
    """Dotted modules a module of ``package`` imports, with the line (relative imports
    are resolved against the module's own package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    inside = path.is_relative_to(REPO)
    own = ".".join(path.relative_to(REPO).parts[:-1]) if inside else package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own.split(".")[: len(own.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
                found.add((module, node.lineno))
            elif node.module:
                found.update((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add((node.args[0].value, node.lineno))
    return found


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """Top-level packages a module of ``package`` imports, with the line."""
    return {(module.split(".")[0], line) for module, line in imported_modules(path, package)}


def modules(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


def app_folder(module: str) -> str | None:
    """``app.gates.catalog`` → ``gates``; ``app.main`` → ``main``; outside app → None."""
    parts = module.split(".")
    if parts[0] != "app" or len(parts) < 2 or parts[1] == "__init__":
        return None
    return parts[1]


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


def test_every_app_module_is_in_a_known_folder() -> None:
    unknown = {
        str(path.relative_to(REPO))
        for path in modules("app")
        if path != REPO / "app" / "__init__.py"
        if app_folder(".".join(path.relative_to(REPO).with_suffix("").parts)) not in APP_RULES
    }
    assert unknown == set()


def test_app_folders_import_only_what_their_rule_allows() -> None:
    violations = []
    for path in modules("app"):
        dotted = ".".join(path.relative_to(REPO).with_suffix("").parts)
        folder = app_folder(dotted)
        if folder is None:
            continue
        allowed = APP_RULES[folder] | {folder}
        for module, line in sorted(imported_modules(path, "app")):
            target = app_folder(module)
            if target is not None and target not in allowed:
                violations.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The tests above would catch a backwards import, plain or hidden in a function."""
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


def test_the_folder_checker_sees_a_sideways_import() -> None:
    """``from app.checks import x`` inside app/gates would be named with its line."""
    assert app_folder("app.checks.runner") == "checks"
    assert "checks" not in APP_RULES["gates"]
    assert "gates" in APP_RULES["checks"]
