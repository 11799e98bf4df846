"""Ranking: rankers, reciprocal rank fusion and the one search path hub and replica share.

A search runs every configured :class:`Ranker` (built in: ``bm25`` over the
text index, ``vector`` over the configured embedder's vectors) on a
:class:`Corpus`, fuses their rankings by weighted reciprocal rank fusion,

    score(d) = sum over rankers r of  weight_r / (rrf_k + rank_r(d))

(``rank`` from 1; a document a ranker did not return adds nothing), applies
the query's filters, then passes the hits through each configured
:class:`Reranker`. The hub's search route and an instance's replica both call
:func:`run_search`, so they rank the same documents the same way.
"""

from __future__ import annotations

import abc
import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from experience_sync.interfaces import Embedder, FloatArray

from .documents import DocKey, SearchDoc, matches
from .models import SearchHit, SearchQuery, SearchResults

__all__ = [
    "Corpus",
    "Ranker",
    "Reranker",
    "VectorTable",
    "fuse",
    "run_search",
    "unit_rows",
]


class Corpus(abc.ABC):
    """What rankers search: one agent's documents, on the hub or in a replica."""

    agent_id: str
    #: The embedder of the ``vector`` ranker, or ``None`` (then it matches nothing).
    embedder: Embedder | None = None
    #: The least cosine similarity the ``vector`` ranker returns.
    min_similarity: float = 0.0

    @abc.abstractmethod
    def lexical(self, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        """BM25 matches, best first (kinds and knowledge status already filtered)."""

    def vector(self, vector: FloatArray, limit: int) -> list[tuple[DocKey, float]]:
        """Nearest documents by cosine, best first (empty without vectors)."""
        return []

    @abc.abstractmethod
    def docs(self, keys: Sequence[DocKey]) -> dict[DocKey, SearchDoc]:
        """The documents of ``keys``."""

    def item(self, doc: SearchDoc) -> dict[str, Any]:
        """The item a hit carries (default: the document's stored body)."""
        return json.loads(doc.body) if doc.body else {}

    @property
    def cursor(self) -> int:
        """The agent cursor the corpus reflects."""
        return 0


class Ranker(abc.ABC):
    """Ranks a corpus's documents for a query. Registered through ``experience_sync_register_rankers``."""

    name: str = "ranker"

    @abc.abstractmethod
    def rank(self, corpus: Corpus, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        """Up to ``limit`` ``((kind, id), score)`` pairs, best first."""


class Reranker(abc.ABC):
    """Reorders (or trims) fused hits. Registered through ``experience_sync_register_rerankers``."""

    name: str = "reranker"

    @abc.abstractmethod
    def rerank(self, query: SearchQuery, hits: list[SearchHit]) -> list[SearchHit]:
        """The hits in their new order (may drop some; must not invent any)."""


def fuse(
    rankings: dict[str, list[tuple[DocKey, float]]],
    weights: dict[str, float] | None = None,
    rrf_k: int = 60,
) -> list[tuple[DocKey, float, list[str]]]:
    """Weighted reciprocal rank fusion: ``(key, score, rankers that returned it)``, best first.

    Ties keep the order of the first ranker that returned each document.
    """
    scores: dict[DocKey, float] = {}
    by: dict[DocKey, list[str]] = {}
    for name, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for position, (key, _score) in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (rrf_k + position)
            by.setdefault(key, []).append(name)
    order = sorted(scores, key=lambda k: -scores[k])
    return [(k, scores[k], by[k]) for k in order]


def run_search(
    corpus: Corpus,
    query: SearchQuery,
    rankers: Sequence[Ranker],
    rerankers: Sequence[Reranker] = (),
    *,
    weights: dict[str, float] | None = None,
    rrf_k: int = 60,
    depth: int | None = None,
) -> SearchResults:
    """Run a search on ``corpus``: every ranker, fusion, filters, rerankers.

    :param depth: how many candidates each ranker returns (default ``max(50, 10 * k)``).
    """
    limit = depth or max(50, 10 * query.k)
    rankings = {r.name: r.rank(corpus, query, limit) for r in rankers}
    fused = fuse(rankings, weights, rrf_k)
    hits: list[SearchHit] = []
    # Documents are read a chunk at a time, best first, until ``k`` hits pass
    # the filters: most searches read ``k`` of the ~50-100 fused candidates.
    # Rerankers see every candidate that passes.
    start, chunk = 0, len(fused) if rerankers else query.k + 4
    while start < len(fused) and (rerankers or len(hits) < query.k):
        part = fused[start : start + chunk]
        docs = corpus.docs([key for key, _, _ in part])
        for key, score, names in part:
            doc = docs.get(key)
            if doc is None or not matches(doc, query):
                continue
            hits.append(doc.hit(score, names, corpus.item(doc)))
            if len(hits) >= query.k and not rerankers:
                break
        start += len(part)
        chunk *= 2
    for reranker in rerankers:
        hits = reranker.rerank(query, hits)
    return SearchResults(
        agent_id=corpus.agent_id,
        query=query,
        hits=hits[: query.k],
        rankers=[r.name for r in rankers],
        cursor=corpus.cursor,
    )


class Bm25Ranker(Ranker):
    """``bm25``: the corpus's text index (SQLite FTS5, PostgreSQL full-text search)."""

    name = "bm25"

    def rank(self, corpus: Corpus, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        return corpus.lexical(query, limit)


class VectorRanker(Ranker):
    """``vector``: cosine similarity of the query's and the documents' embeddings."""

    name = "vector"

    def rank(self, corpus: Corpus, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        if corpus.embedder is None:
            return []
        vector = corpus.embedder.embed([query.q])
        floor = corpus.min_similarity
        return [(key, score) for key, score in corpus.vector(vector[0], limit) if score >= floor]


def unit_rows(matrix: FloatArray) -> FloatArray:
    """``matrix`` as float32 with every non-zero row scaled to length 1."""
    out = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True).astype(np.float32)
    result: FloatArray = (out / np.where(norms > 0, norms, np.float32(1.0))).astype(np.float32)
    return result


class VectorTable:
    """Document vectors in one float32 matrix, searched exactly by inner product.

    Updating a document overwrites its row in place; removing one frees its
    row for reuse. Thread-safe.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._matrix = np.zeros((256, dim), dtype=np.float32)
        self._rows: dict[DocKey, int] = {}
        self._keys: list[DocKey | None] = []
        self._free: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def upsert(self, keys: Sequence[DocKey], vectors: FloatArray) -> None:
        """Set the vectors of ``keys`` (rows of ``vectors``, L2-normalised)."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            for key, vec in zip(keys, vectors, strict=True):
                row = self._rows.get(key)
                if row is None:
                    if self._free:
                        row = self._free.pop()
                        self._keys[row] = key
                    else:
                        row = len(self._keys)
                        self._keys.append(key)
                        if row >= len(self._matrix):
                            grown = np.zeros((2 * len(self._matrix), self.dim), dtype=np.float32)
                            grown[: len(self._matrix)] = self._matrix
                            self._matrix = grown
                    self._rows[key] = row
                self._matrix[row] = vec

    def remove(self, keys: Iterable[DocKey]) -> None:
        """Forget the vectors of ``keys``."""
        with self._lock:
            for key in keys:
                row = self._rows.pop(key, None)
                if row is not None:
                    self._matrix[row] = 0.0
                    self._keys[row] = None
                    self._free.append(row)

    def search(self, vector: FloatArray, limit: int) -> list[tuple[DocKey, float]]:
        """The ``limit`` nearest documents, best first."""
        with self._lock:
            n = len(self._keys)
            if n == 0 or limit <= 0:
                return []
            scores = self._matrix[:n] @ np.asarray(vector, dtype=np.float32).reshape(self.dim)
            kk = min(limit, n)
            top = np.argpartition(-scores, kk - 1)[:kk]
            top = top[np.argsort(-scores[top])]
            out: list[tuple[DocKey, float]] = []
            for row in top:
                key = self._keys[int(row)]
                if key is not None:
                    out.append((key, float(scores[row])))
            return out
