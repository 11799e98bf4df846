"""First-party plugins, adapters and examples import only the stable surface.

``experience_sync.api`` and ``experience_sync.testing`` (and the names the
top-level package exports) are what a plugin may import; every other module
of the package is internal. This walks the source of every plugin, adapter
and example and fails on an import of an internal module, naming the file
and line.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import experience_sync
import experience_sync.api as api

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"experience_sync", "experience_sync.api", "experience_sync.testing"}
CHECKED = [
    *sorted((ROOT / "plugins").glob("*/src")),
    *sorted((ROOT / "adapters").glob("*/src")),
    ROOT / "examples",
]


def internal_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line module`` for each import of an internal experience_sync module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "experience_sync":
                # ``from experience_sync import hub`` names a module, not an export.
                modules += [
                    f"experience_sync.{a.name}" for a in node.names
                    if a.name not in experience_sync.__all__
                ]
        for module in modules:
            if (module == "experience_sync" or module.startswith("experience_sync.")) and (
                module not in PUBLIC
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno} {module}")
    return found


def _sources() -> list[Path]:
    out: list[Path] = []
    for base in CHECKED:
        out += [p for p in sorted(base.rglob("*.py")) if "build" not in p.parts]
    return out


def test_plugins_adapters_and_examples_import_only_the_stable_surface() -> None:
    sources = _sources()
    assert len(sources) > 20
    violations = [v for path in sources for v in internal_imports(path)]
    assert violations == [], "internal imports:\n" + "\n".join(violations)


def test_the_check_catches_a_deliberate_internal_import(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "from experience_sync.api import hookimpl\n"
        "from experience_sync import load_config\n"
        "def f():\n"
        "    from experience_sync.stores.state import ChangeSet\n"
        "    import experience_sync.client.retry\n"
        "    from experience_sync import hub\n"
    )
    found = [v.split(" ", 1)[1] for v in internal_imports(plugin, tmp_path)]
    assert found == ["experience_sync.stores.state", "experience_sync.client.retry",
                     "experience_sync.hub"]


@pytest.mark.parametrize("name", api.__all__)
def test_every_api_name_exists_and_is_documented(name: str) -> None:
    obj = getattr(api, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert (obj.__doc__ or "").strip(), f"experience_sync.api.{name} has no docstring"
