"""The rules of the house (docs/DESIGN "One boss wires narrow workers"), checked on the
source: no worker imports the service, and no module reaches into another module's
private attributes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "messenger"

# Modules that may import messenger.service: the service itself, and the package's
# __init__, which re-exports PeerService as the public API.
MAY_IMPORT_SERVICE = {"service.py", "__init__.py"}

# `obj._name` across modules that is allowed, with the reason. Keep this short.
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {
    # GroupRepository writes the contact row inside its own transaction with the helper
    # Repository keeps for that (one storage layer split over two modules).
    ("storage/group_repository.py", "_add_contact"): "storage shares a transaction helper",
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports_service(path: Path, tree: ast.AST) -> list[int]:
    """Lines importing messenger.service (absolute, or relative from any depth)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for messenger/x.py
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "messenger.service" for a in node.names):
                found.append(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                absolute = module
            elif node.level == depth + 1:
                absolute = "messenger" + ("." + module if module else "")
            else:
                continue  # relative to a subpackage: cannot name messenger.service
            names = {a.name for a in node.names}
            if absolute == "messenger.service" or (absolute == "messenger" and "service" in names):
                found.append(node.lineno)
    return found


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, assignments, self._x = ..."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_accesses(source: str, name: str) -> list[str]:
    """`x._name` where x is not self/cls and _name is not defined in this module."""
    tree = ast.parse(source, name)
    own = _defined_privates(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if attr in own or (name, attr) in PRIVATE_ALLOWED:
            continue
        found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_service_module_imports_the_service(path: Path) -> None:
    if _rel(path) in MAY_IMPORT_SERVICE:
        return
    lines = _imports_service(path, ast.parse(path.read_text(), str(path)))
    assert not lines, f"{_rel(path)} imports messenger.service (lines {lines}): use a port"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_private_attribute_of_another_module_is_touched(path: Path) -> None:
    assert private_accesses(path.read_text(), _rel(path)) == []


def test_the_checks_catch_what_they_are_meant_to() -> None:
    """Both checks fire on code that breaks the rules (they are not vacuous)."""
    deep = PACKAGE / "files" / "probe.py"
    assert _imports_service(deep, ast.parse("from ..service import PeerService\n")) == [1]
    assert _imports_service(deep, ast.parse("from .service import X\n")) == []  # files/service
    top = PACKAGE / "probe.py"
    source = "from . import service\nfrom .service import X\nimport messenger.service\n"
    assert _imports_service(top, ast.parse(source)) == [1, 2, 3]
    reach = "def f(s):\n    return s._live, s.ok, self._mine\n"
    assert private_accesses(reach, "probe.py") == ["probe.py:2: s._live"]
    friend = "class A:\n    def f(self, other):\n        self._x = 1\n        return other._x\n"
    assert private_accesses(friend, "probe.py") == []  # the same module's own attribute
