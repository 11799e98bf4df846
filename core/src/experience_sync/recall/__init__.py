"""Recall: ranked search over a source agent's merged learning, on the hub and in replicas.

See ``docs/recall.md``. :func:`run_search` is the one search path; the hub
(:class:`~experience_sync.hub.engine.MergeEngine.search`) and the instance's
:class:`~experience_sync.recall.replica.Replica` each give it a
:class:`Corpus`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .documents import (
        DocKey,
        SearchDoc,
        doc_of_event,
        doc_of_knowledge,
        doc_of_memory,
        doc_of_skill,
    )
    from .fts import FtsIndex, match_expression, query_terms
    from .models import KINDS, Provenance, SearchHit, SearchKind, SearchQuery, SearchResults
    from .ranking import Corpus, Ranker, Reranker, VectorTable, fuse, run_search
    from .render import render_hits

__all__ = [
    "KINDS",
    "Corpus",
    "DocKey",
    "FtsIndex",
    "Provenance",
    "Ranker",
    "Reranker",
    "SearchDoc",
    "SearchHit",
    "SearchKind",
    "SearchQuery",
    "SearchResults",
    "VectorTable",
    "doc_of_event",
    "doc_of_knowledge",
    "doc_of_memory",
    "doc_of_skill",
    "fuse",
    "match_expression",
    "query_terms",
    "render_hits",
    "run_search",
]

# The names load on first use (PEP 562): ``experience_sync.recall.render``
# (a client's prompt rendering) does not bring the ranking and numpy with it.
_MODULES: dict[str, tuple[str, ...]] = {
    ".documents": (
        "DocKey", "SearchDoc", "doc_of_event", "doc_of_knowledge", "doc_of_memory", "doc_of_skill",
    ),
    ".fts": ("FtsIndex", "match_expression", "query_terms"),
    ".models": ("KINDS", "Provenance", "SearchHit", "SearchKind", "SearchQuery", "SearchResults"),
    ".ranking": ("Corpus", "Ranker", "Reranker", "VectorTable", "fuse", "run_search"),
    ".render": ("render_hits",),
}
_NAMES = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Load a name of ``__all__`` on first use, then keep it."""
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
