"""The house rules of ui/, checked on its source (no Qt needed):

- ui/ imports only the `messenger` package (its ``__init__``), never a module inside it, so
  messenger/ can move its modules without breaking the front end;
- ui/models/ never imports ui/views/ (views use models, not the other way round);
- every name ui/ takes from `messenger` is in ``messenger.__all__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import messenger

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"


def _package(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def _imports(path: Path, package: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names) of every import in `path`, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module, [alias.name for alias in node.names]


def _ui_files() -> list[Path]:
    files = sorted(UI.rglob("*.py"))
    assert len(files) > 20, "ui/ not found where the test expects it"
    return files


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def _deep_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Imports of a module inside messenger/, or of a name messenger does not export."""
    return [
        (line, module)
        for line, module, names in _imports(path, package)
        if module.startswith("messenger.")
        or (module == "messenger" and any(n not in messenger.__all__ for n in names))
    ]


def test_ui_imports_only_the_messenger_package() -> None:
    deep = [
        f"{_where(path, line)} imports {module}"
        for path in _ui_files()
        for line, module in _deep_imports(path, _package(path))
    ]
    assert deep == [], "ui/ must import only names in messenger.__all__:\n" + "\n".join(deep)


def test_models_never_import_views() -> None:
    found = [
        f"{_where(path, line)} imports {module}"
        for path in sorted((UI / "models").rglob("*.py"))
        for line, module, _names in _imports(path, _package(path))
        if module == "ui.views" or module.startswith("ui.views.")
    ]
    assert found == [], "ui/models must not import ui/views:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from messenger.records import GroupRecord\n", True),
        ("import messenger.service\n", True),
        ("def f():\n    from messenger.cli import parse_listen\n", True),
        ("from messenger import NotInAll\n", True),
        ("from messenger import PeerService, MessageRecord\n", False),
        ("import messenger\n", False),
    ],
)
def test_the_rule_catches_deep_imports(tmp_path: Path, source: str, bad: bool) -> None:
    """The checker itself: it sees deep and nested imports and names missing from __all__."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert bool(_deep_imports(path, "ui")) is bad


def test_relative_imports_resolve_inside_ui() -> None:
    """ui/views/transfers.py imports `..models.thumbnails`: resolved, it is ui.models...."""
    path = UI / "views" / "transfers.py"
    modules = {m for _l, m, _n in _imports(path, _package(path))}
    assert "ui.models.thumbnails" in modules
