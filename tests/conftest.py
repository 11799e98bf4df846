"""Shared fixtures. Entry-point auto-loading is off so that plugins installed in
the developer's environment cannot change test results; tests that install a
plugin on purpose turn it back on."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from experience_sync.plugins import registered_plugin, reset_plugin_manager


@pytest.fixture(autouse=True)
def _fresh_plugin_manager() -> Iterator[None]:
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def register_plugin() -> Iterator[object]:
    """Register a plugin object for one test: ``register_plugin(obj, name=...)``."""
    stack: list[object] = []

    def _register(plugin: object, name: str | None = None) -> str:
        cm = registered_plugin(plugin, name=name)
        plugin_name = cm.__enter__()
        stack.append(cm)
        return plugin_name

    yield _register
    while stack:
        stack.pop().__exit__(None, None, None)  # type: ignore[attr-defined]
