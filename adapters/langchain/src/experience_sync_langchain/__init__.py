"""LangChain adapter for experience-sync.

* :class:`ExperienceSyncCallbackHandler` / :class:`AsyncExperienceSyncCallbackHandler`:
  record tool use, retrievals, runs and explicit ``experience_sync.*`` custom
  events through an ``ExperienceSyncManager``.
* :func:`register_langchain_embeddings`: use any LangChain ``Embeddings`` as the
  hub's embedder for memory deduplication.
* :func:`register_langchain_judge`: use any LangChain chat model as the hub's
  merge judge of near memory pairs.
* :class:`ExperienceSyncRetriever`: a retriever over what the fleet learned.
* :class:`ExperienceSyncStore`: a LangGraph ``BaseStore`` shared by the fleet
  (needs the ``langgraph`` extra; imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from experience_sync_langchain.callbacks import (
    AsyncExperienceSyncCallbackHandler,
    ExperienceSyncCallbackHandler,
)
from experience_sync_langchain.embeddings import (
    LangChainEmbedder,
    register_langchain_embeddings,
    unregister_langchain_embeddings,
)
from experience_sync_langchain.judge import (
    JUDGE_PAIR_PROMPT,
    JUDGE_SYSTEM_PROMPT,
    JudgeAnswer,
    LangChainJudge,
    register_langchain_judge,
    unregister_langchain_judge,
)
from experience_sync_langchain.recorder import (
    CUSTOM_EVENTS,
    DEFAULT_PRIORITIES,
    ExperienceSyncRecorder,
)
from experience_sync_langchain.retriever import ExperienceSyncRetriever

if TYPE_CHECKING:
    from experience_sync_langchain.store import ExperienceSyncStore


def __getattr__(name: str) -> Any:
    # LangGraph is an optional extra: the store is imported only when asked for.
    if name == "ExperienceSyncStore":
        from experience_sync_langchain.store import ExperienceSyncStore

        return ExperienceSyncStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CUSTOM_EVENTS",
    "DEFAULT_PRIORITIES",
    "JUDGE_PAIR_PROMPT",
    "JUDGE_SYSTEM_PROMPT",
    "AsyncExperienceSyncCallbackHandler",
    "ExperienceSyncCallbackHandler",
    "ExperienceSyncRecorder",
    "ExperienceSyncRetriever",
    "ExperienceSyncStore",
    "JudgeAnswer",
    "LangChainEmbedder",
    "LangChainJudge",
    "register_langchain_embeddings",
    "register_langchain_judge",
    "unregister_langchain_embeddings",
    "unregister_langchain_judge",
]
