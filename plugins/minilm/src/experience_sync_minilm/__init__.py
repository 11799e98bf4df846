"""A semantic embedder for experience-sync (``minilm``: all-MiniLM-L6-v2, offline)."""

from experience_sync_minilm.embedder import MiniLMEmbedder

__all__ = ["MiniLMEmbedder"]
