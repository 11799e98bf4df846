"""The entry-point plugin: registers the ``minilm`` embedder."""

from __future__ import annotations

from experience_sync.api import MergeStrategyConfig, Register, hookimpl
from experience_sync_minilm.embedder import MiniLMEmbedder


def _factory(config: MergeStrategyConfig | None = None) -> MiniLMEmbedder:
    # The embedder has no settings in the merge strategy: one model, on the CPU.
    return MiniLMEmbedder()


@hookimpl
def experience_sync_register_embedders(register: Register) -> None:
    """Register ``minilm`` (all-MiniLM-L6-v2, 384 dimensions)."""
    register("minilm", _factory)
