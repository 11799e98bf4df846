"""The hub's ranked search over each source agent's merged learning.

A store with a text index (``sqlite``: FTS5 tables in the same file, written
in the transaction of the state they index) answers the lexical ranker; for
any other store the hub keeps the same FTS5 index in an in-memory SQLite
database, filled when an agent is loaded. Documents are built from the live
merged state, so a hit always shows the item as it is now: a memory that lost
a conflict shows only its winning statement, an open review's proposal is in
no document, and pending knowledge is filtered unless asked for.

Vectors (the ``vector`` ranker, when ``recall.embedder`` names an embedder)
are computed on an agent's first search and, after that, only for the
documents changed since the previous search.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experience_sync.config import MergeStrategyConfig, RecallConfig
from experience_sync.hub.merge.knowledge import stored_knowledge
from experience_sync.hub.merge.memory import stored_memory
from experience_sync.hub.merge.skills import stored_skill
from experience_sync.hub.runtime import AgentRuntime
from experience_sync.interfaces import Embedder, FloatArray, Store
from experience_sync.models import KnowledgeItem, Memory, Skill
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.recall.documents import (
    DocKey,
    SearchDoc,
    doc_of_knowledge,
    doc_of_memory,
    doc_of_skill,
)
from experience_sync.recall.fts import FtsIndex
from experience_sync.recall.models import SearchQuery, SearchResults
from experience_sync.recall.ranking import (
    Corpus,
    Ranker,
    Reranker,
    VectorTable,
    run_search,
    unit_rows,
)
from experience_sync.stores.state import ChangeSet

__all__ = ["HubSearch"]

# Documents embedded per embedder call when an agent's vectors are built.
_EMBED_BATCH = 256


class _Vectors:
    """One agent's document vectors and the documents changed since they were computed."""

    def __init__(self, dim: int) -> None:
        self.table = VectorTable(dim)
        self.pending: set[DocKey] | None = None  # None: every document


class HubSearch:
    """Search for every agent of one merge engine (its indexes and its ranking plugins)."""

    def __init__(
        self,
        store: Store,
        recall: RecallConfig,
        strategy: MergeStrategyConfig,
        pm: ExperienceSyncPluginManager,
    ) -> None:
        self.store = store
        self.config = recall
        registry = pm.registry
        self.rankers: list[Ranker] = [registry.create("rankers", n, recall) for n in recall.rankers]
        self.rerankers: list[Reranker] = [
            registry.create("rerankers", n, recall) for n in recall.rerankers
        ]
        self.embedder: Embedder | None = (
            registry.create("embedders", recall.embedder, strategy) if recall.embedder else None
        )
        self._memory_index: FtsIndex | None = None
        self._memory_lock = threading.Lock()
        if not store.text_index:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._memory_index = FtsIndex(conn)
        self._vectors: dict[str, _Vectors] = {}

    # ------------------------------------------------------------------ upkeep

    def loaded(self, rt: AgentRuntime) -> None:
        """An agent was (re)loaded: bring its text index to its cursor if it is behind."""
        self._vectors.pop(rt.agent_id, None)
        if self._memory_index is None:
            if self.store.search_cursor(rt.agent_id) != rt.cursor:
                self.store.reindex(rt.agent_id, rt.documents(), rt.cursor)
            return
        with self._memory_lock:
            index = self._memory_index
            if index.cursor(rt.agent_id) == rt.cursor:
                return
            index.conn.execute("BEGIN")
            index.clear(rt.agent_id)
            index.upsert(rt.agent_id, rt.documents())
            index.set_cursor(rt.agent_id, rt.cursor)
            index.conn.execute("COMMIT")

    def committed(self, agent_id: str, changes: ChangeSet) -> None:
        """The store committed ``changes``: index them where the store does not."""
        if not changes.documents:
            return
        if self._memory_index is not None:
            with self._memory_lock:
                index = self._memory_index
                index.conn.execute("BEGIN")
                index.upsert(agent_id, changes.documents)
                index.set_cursor(agent_id, changes.cursor)
                index.conn.execute("COMMIT")
        vectors = self._vectors.get(agent_id)
        if vectors is not None and vectors.pending is not None:
            vectors.pending.update(d.doc_key for d in changes.documents)

    def forget(self, agent_id: str) -> None:
        """Drop what is kept in memory for the agent (its state is being replaced)."""
        self._vectors.pop(agent_id, None)
        if self._memory_index is not None:
            with self._memory_lock:
                self._memory_index.clear(agent_id)

    # ------------------------------------------------------------------ search

    def search(self, rt: AgentRuntime, query: SearchQuery) -> SearchResults:
        """Rank the agent's documents for ``query`` (call with the agent's lock held)."""
        return run_search(
            _HubCorpus(self, rt),
            query,
            self.rankers,
            self.rerankers,
            weights=self.config.weights or None,
            rrf_k=self.config.rrf_k,
        )

    def search_in_place(self, agent_id: str, query: SearchQuery) -> SearchResults | None:
        """The search of an agent that is not loaded, read from the store, or ``None`` if it cannot be.

        It can be with a store that reads in place and keeps the text index,
        when the index is at the agent's cursor (a load brings it there
        otherwise) and no embedder is configured (vectors are computed from
        the loaded state). The hits are those :meth:`search` of the loaded
        agent gives.
        """
        store = self.store
        if self._memory_index is not None or self.embedder is not None or not store.reads_in_place:
            return None
        cursor = store.agent_cursor(agent_id)
        if store.search_cursor(agent_id) != cursor:
            return None
        return run_search(
            _StoreCorpus(self, agent_id, cursor),
            query,
            self.rankers,
            self.rerankers,
            weights=self.config.weights or None,
            rrf_k=self.config.rrf_k,
        )

    def lexical(
        self, agent_id: str, query: SearchQuery, limit: int
    ) -> list[tuple[DocKey, float]]:
        """BM25 matches from the store's index or the in-memory one."""
        if self._memory_index is None:
            return self.store.search_text(
                agent_id, query.q, query.kinds, query.knowledge_status, limit
            )
        with self._memory_lock:
            return self._memory_index.lexical(
                agent_id, query.q, query.kinds, query.knowledge_status, limit
            )

    def vectors(self, rt: AgentRuntime) -> VectorTable | None:
        """The agent's document vectors, brought up to date (``None`` without an embedder)."""
        embedder = self.embedder
        if embedder is None:
            return None
        vectors = self._vectors.get(rt.agent_id)
        if vectors is None:
            vectors = self._vectors[rt.agent_id] = _Vectors(embedder.dim)
        if vectors.pending is None:
            docs = rt.documents()
        else:
            docs = [d for d in _docs(rt, list(vectors.pending)).values()]
        for start in range(0, len(docs), _EMBED_BATCH):
            chunk = docs[start : start + _EMBED_BATCH]
            matrix = unit_rows(embedder.embed([d.text for d in chunk]))
            vectors.table.upsert([d.doc_key for d in chunk], matrix)
        vectors.pending = set()
        return vectors.table


def _docs(rt: AgentRuntime, keys: Sequence[DocKey]) -> dict[DocKey, SearchDoc]:
    memories, items, skills = rt.memory.memories, rt.knowledge.items, rt.skills.skills
    out: dict[DocKey, SearchDoc] = {}
    for key in keys:
        kind, ident = key
        if kind == "memory":
            memory = memories.get(ident)
            if memory is not None:
                out[key] = doc_of_memory(memory)
        elif kind == "knowledge":
            item = items.get(ident)
            if item is not None:
                out[key] = doc_of_knowledge(item)
        elif kind == "skill":
            skill = skills.get(ident)
            if skill is not None:
                out[key] = doc_of_skill(skill)
    return out


class _HubCorpus(Corpus):
    """One agent's live merged state as a search corpus."""

    def __init__(self, search: HubSearch, rt: AgentRuntime) -> None:
        self._search = search
        self._rt = rt
        self.agent_id = rt.agent_id
        self.embedder = search.embedder
        self.min_similarity = search.config.min_similarity
        self._table: VectorTable | None = None

    def lexical(self, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        return self._search.lexical(self.agent_id, query, limit)

    def vector(self, vector: FloatArray, limit: int) -> list[tuple[DocKey, float]]:
        table = self._search.vectors(self._rt)
        if table is None:
            return []
        vec = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return table.search(vec / norm if norm > 0 else vec, limit)

    def docs(self, keys: Sequence[DocKey]) -> dict[DocKey, SearchDoc]:
        return _docs(self._rt, keys)

    def item(self, doc: SearchDoc) -> dict[str, Any]:
        rt = self._rt
        if doc.kind == "memory":
            return rt.memory.memories[doc.key].model_dump(mode="json", exclude={"embedding"})
        if doc.kind == "knowledge":
            return rt.knowledge.items[doc.key].model_dump(mode="json")
        return rt.skills.skills[doc.key].model_dump(mode="json")

    @property
    def cursor(self) -> int:
        return self._rt.cursor


# The state table of each document kind, and how a row of it is read.
_TABLES: dict[str, tuple[str, Callable[[str], Memory | KnowledgeItem | Skill]]] = {
    "memory": ("memories", stored_memory),
    "knowledge": ("knowledge", stored_knowledge),
    "skill": ("skills", stored_skill),
}


class _StoreCorpus(Corpus):
    """One agent's committed state, read from the store (the agent is not loaded)."""

    def __init__(self, search: HubSearch, agent_id: str, cursor: int) -> None:
        self._search = search
        self.agent_id = agent_id
        self._cursor = cursor
        self.min_similarity = search.config.min_similarity
        self._items: dict[DocKey, Memory | KnowledgeItem | Skill] = {}

    def lexical(self, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        return self._search.lexical(self.agent_id, query, limit)

    def docs(self, keys: Sequence[DocKey]) -> dict[DocKey, SearchDoc]:
        by_kind: dict[str, list[str]] = {}
        for kind, ident in keys:
            if kind in _TABLES:
                by_kind.setdefault(kind, []).append(ident)
        for kind, idents in by_kind.items():
            table, read = _TABLES[kind]
            for row in self._search.store.read_rows(self.agent_id, table, idents):
                self._items[(kind, row.key)] = read(row.body)
        out: dict[DocKey, SearchDoc] = {}
        for key in keys:
            item = self._items.get(key)
            if isinstance(item, Memory):
                out[key] = doc_of_memory(item)
            elif isinstance(item, KnowledgeItem):
                out[key] = doc_of_knowledge(item)
            elif isinstance(item, Skill):
                out[key] = doc_of_skill(item)
        return out

    def item(self, doc: SearchDoc) -> dict[str, Any]:
        item = self._items[(doc.kind, doc.key)]
        if isinstance(item, Memory):
            return item.model_dump(mode="json", exclude={"embedding"})
        return item.model_dump(mode="json")

    @property
    def cursor(self) -> int:
        return self._cursor
