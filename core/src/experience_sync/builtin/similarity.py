"""Built-in similarity methods: ``jaccard`` and ``embedding`` (see :mod:`experience_sync.hub.merge.similarity`)."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.hub.merge.similarity import EmbeddingSimilarity, JaccardSimilarity


@hookimpl
def experience_sync_register_similarity_methods(register: Register) -> None:
    """Register ``jaccard`` and ``embedding``."""
    register("jaccard", lambda config=None: JaccardSimilarity(config))
    register("embedding", lambda config=None: EmbeddingSimilarity(config))
