"""A hub whose merge plugins cannot work refuses to start, instead of
answering every memory with a 500."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from experience_sync import PluginError, hookimpl
from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.interfaces import Embedder, FloatArray


class _Unreachable(Embedder):
    name = "unreachable"

    def embed(self, texts: Sequence[str]) -> FloatArray:
        raise ConnectionError("embedding service at 10.0.0.1 is unreachable")


class _BrokenEmbedderPlugin:
    @hookimpl
    def experience_sync_register_embedders(self, register: Any) -> None:
        register("unreachable", lambda config=None: _Unreachable())


def test_engine_with_a_failing_embedder_fails_at_start(
    tmp_path: Path, register_plugin: Any
) -> None:
    register_plugin(_BrokenEmbedderPlugin(), name="broken-embedder")
    strategy = MergeStrategyConfig(similarity_method="embedding", embedder="unreachable")
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    try:
        with pytest.raises(PluginError, match="unreachable"):
            MergeEngine(store, strategy)
    finally:
        store.close()


def test_serve_refuses_to_start_with_a_failing_embedder(
    tmp_path: Path, register_plugin: Any
) -> None:
    register_plugin(_BrokenEmbedderPlugin(), name="broken-embedder")
    config = tmp_path / "hub.toml"
    config.write_text(
        '[merge_strategy]\nsimilarity_method = "embedding"\nembedder = "unreachable"\n'
    )
    result = CliRunner().invoke(
        build_cli(),
        ["serve", "--store", f"sqlite:///{tmp_path}/hub.db", "--config", str(config),
         "--port", "0"],
    )
    assert result.exit_code == 1
    assert "unreachable" in result.output


def test_engine_with_working_plugins_starts(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    try:
        MergeEngine(store, MergeStrategyConfig(similarity_method="embedding")).close()
    finally:
        store.close()
