"""The package layout stays what the Layout section of docs/library.md describes: few top-level modules, role
packages that do not import each other in a ring (so each can be read and tested from the bottom up), short
functions."""

from __future__ import annotations

import ast
from pathlib import Path

from pytorch_lightning import LightningModule

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dim_lightning"


def _imported_units(path: Path) -> set[str]:
    """The first-level names under dim_lightning (package or top-level module) that one source file imports."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "dim_lightning":
                units |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            units |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dim_lightning.")}
    return units


def _unit_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = _unit_of(path)
        graph.setdefault(unit, set()).update(_imported_units(path) - {unit})
    return graph


def find_ring(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of units that import each other in a ring, or None (depth-first search for a back edge)."""
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = "open"
        for used in sorted(graph.get(unit, ())):
            if state.get(used) == "open":
                return [*path[path.index(used) :], used] if used in path else [unit, used]
            if used not in state and (ring := visit(used, [*path, used])):
                return ring
        state[unit] = "done"
        return None

    for unit in sorted(graph):
        if unit not in state and (ring := visit(unit, [unit])):
            return ring
    return None


def test_the_packages_import_each_other_without_a_ring() -> None:
    assert find_ring(package_graph()) is None


def test_the_ring_finder_finds_a_ring() -> None:
    assert find_ring({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_ring({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_at_most_eight_modules_sit_at_the_top_of_the_package() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 8


def test_no_function_is_longer_than_60_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


LIGHTNING = ("pytorch_lightning", "lightning_fabric", "lightning")
LIGHTNING_OBJECTS = ("trainer", "loop", "strategy", "launcher", "connector")
LIGHTNING_MODULE_PRIVATE = {name for name in (*vars(LightningModule()), *dir(LightningModule)) if name[0] == "_"}


def lightning_private_uses(source: str) -> list[str]:
    """Private names imported from Lightning, and private attributes read from its trainer, loops, strategy or
    launcher (by the name the code gives them) or from a LightningModule's `self`, in one module's source."""
    uses, tree = [], ast.parse(source)
    classes = (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef))
    module_class = any("LightningModule" in ast.unparse(base) for c in classes for base in c.bases)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIGHTNING:
            uses += [f"import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = ast.unparse(node.value).lower()
            lightnings = module_class and owner == "self" and node.attr in LIGHTNING_MODULE_PRIVATE
            if lightnings or any(word in owner for word in LIGHTNING_OBJECTS):
                uses.append(f"{ast.unparse(node.value)}.{node.attr}")
    return uses


def test_only_lightning_compat_touches_lightnings_private_api() -> None:
    found = {
        str(path.relative_to(PACKAGE)): uses
        for path in PACKAGE.rglob("*.py")
        if path.name != "lightning_compat.py" and (uses := lightning_private_uses(path.read_text()))
    }
    assert found == {}
    assert lightning_private_uses((PACKAGE / "run" / "lightning_compat.py").read_text())  # the finder finds them
