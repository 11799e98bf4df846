"""Built-in search rankers: ``bm25`` (the text index) and ``vector`` (the recall embedder)."""

from __future__ import annotations

from typing import Any

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.recall.ranking import Bm25Ranker, VectorRanker


@hookimpl
def experience_sync_register_rankers(register: Register) -> None:
    """Register ``bm25`` and ``vector``."""

    def bm25(config: Any = None) -> Bm25Ranker:
        return Bm25Ranker()

    def vector(config: Any = None) -> VectorRanker:
        return VectorRanker()

    register("bm25", bm25)
    register("vector", vector)
