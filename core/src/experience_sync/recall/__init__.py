"""Recall: ranked search over a source agent's merged learning, on the hub and in replicas.

See ``docs/recall.md``. :func:`run_search` is the one search path; the hub
(:class:`~experience_sync.hub.engine.MergeEngine.search`) and the instance's
:class:`~experience_sync.recall.replica.Replica` each give it a
:class:`Corpus`.
"""

from __future__ import annotations

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
