"""LangChain adapter for experience-sync.

* :class:`ExperienceSyncCallbackHandler` / :class:`AsyncExperienceSyncCallbackHandler`:
  record tool use, retrievals, runs and explicit ``experience_sync.*`` custom
  events through an ``ExperienceSyncManager``.
* :func:`register_langchain_embeddings`: use any LangChain ``Embeddings`` as the
  hub's embedder for memory deduplication.
"""

from __future__ import annotations

from experience_sync_langchain.callbacks import (
    AsyncExperienceSyncCallbackHandler,
    ExperienceSyncCallbackHandler,
)
from experience_sync_langchain.embeddings import (
    LangChainEmbedder,
    register_langchain_embeddings,
    unregister_langchain_embeddings,
)
from experience_sync_langchain.recorder import (
    CUSTOM_EVENTS,
    DEFAULT_PRIORITIES,
    ExperienceSyncRecorder,
)

__all__ = [
    "CUSTOM_EVENTS",
    "DEFAULT_PRIORITIES",
    "AsyncExperienceSyncCallbackHandler",
    "ExperienceSyncCallbackHandler",
    "ExperienceSyncRecorder",
    "LangChainEmbedder",
    "register_langchain_embeddings",
    "unregister_langchain_embeddings",
]
