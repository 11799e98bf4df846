"""Meta-tests: every hook is documented with its exact signature and tested.

In the style of datasette: adding a hook to ``hookspecs`` without a heading in
``docs/plugins.md`` or a ``test_hook_<name>`` test fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from experience_sync import hookspecs
from experience_sync.plugins import HOOK_PREFIX, KINDS, get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"


def _hooks() -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith(HOOK_PREFIX) and hasattr(fn, "experience_sync_spec")
    }


HOOKS = _hooks()


def signature(fn: Callable[..., Any]) -> str:
    """``name(arg: Type) -> Return``, as the heading in docs/plugins.md spells it.

    Annotations are strings (``from __future__ import annotations``); the
    quotes ``inspect`` puts around them are dropped.
    """
    return fn.__name__ + str(inspect.signature(fn)).replace("'", "")


def _doc_headings() -> set[str]:
    text = DOCS.read_text()
    return {
        line.lstrip("#").strip().strip("`")
        for line in text.splitlines()
        if re.match(r"#{2,4} ", line)
    }


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names.update(
            node.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        )
    return names


def test_hookspecs_are_found() -> None:
    assert len(HOOKS) >= 12
    assert set(get_plugin_manager().hook.__dict__) >= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_heading_with_its_exact_signature(name: str) -> None:
    expected = signature(HOOKS[name])
    assert expected in _doc_headings(), f"docs/plugins.md needs a heading: ### `{expected}`"


def test_every_signature_heading_is_a_current_hook() -> None:
    documented = {h for h in _doc_headings() if h.startswith(HOOK_PREFIX)}
    current = {signature(fn) for fn in HOOKS.values()}
    assert documented <= current, f"stale hook headings: {sorted(documented - current)}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_test(name: str) -> None:
    wanted = "test_hook_" + name.removeprefix(HOOK_PREFIX)
    assert wanted in _test_function_names(), f"write a test named {wanted}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented_pytest_style(name: str) -> None:
    fn = HOOKS[name]
    doc = inspect.getdoc(fn) or ""
    assert doc.splitlines()[0].endswith("."), "one-line summary first"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc
    returns = inspect.signature(fn).return_annotation
    if returns not in ("None", None):
        assert ":returns:" in doc
    if fn.experience_sync_spec.get("firstresult"):  # type: ignore[attr-defined]
        assert "Stops at first non-None result" in doc


def test_every_registry_kind_has_a_hook() -> None:
    assert set(KINDS.values()) <= set(HOOKS)
