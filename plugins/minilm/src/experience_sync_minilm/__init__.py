"""A semantic embedder for experience-sync (``minilm``: all-MiniLM-L6-v2 by default, offline)."""

from experience_sync_minilm.embedder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CACHE_SIZE,
    DEFAULT_MODEL,
    MiniLMEmbedder,
    cache_key,
    load_model,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MODEL",
    "MiniLMEmbedder",
    "cache_key",
    "load_model",
]
