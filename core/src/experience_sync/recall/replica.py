"""An instance's local replica of its source agent: searchable offline, read-your-writes.

The replica is one SQLite file beside the outbox (``<data_dir>/<instance>/replica.db``)
holding the search documents of the source agent's merged memories, knowledge
and skills, with each item's JSON. It is filled by cursor pulls
(``fetch_state(since=cursor)``, only what changed) on a background thread
every ``recall.pull_interval`` seconds and on demand
(:meth:`Replica.refresh`); the first pull of a new instance copies the whole
source agent (the spec's *deploy*). Searches never touch the network, so they
keep answering while the hub is down.

Read-your-writes: a memory or knowledge item this instance records is
searchable at once as a *local* document (``provenance.local``), until a pull
that started after the hub acknowledged its event brings the merged item;
then the local document is dropped. The file survives restarts (its cursor
with it) and is bounded: beyond ``recall.max_memories`` merged memories, the
least recently updated leave first.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from experience_sync.config import RecallConfig
from experience_sync.interfaces import Embedder, FloatArray, Transport
from experience_sync.models import AgentState, ExperienceEvent

from .documents import (
    DocKey,
    SearchDoc,
    doc_of_event,
    doc_of_knowledge,
    doc_of_memory,
    doc_of_skill,
)
from .fts import FtsIndex
from .models import SearchQuery, SearchResults
from .ranking import Corpus, Ranker, Reranker, VectorTable, run_search, unit_rows

__all__ = ["Replica"]

log = logging.getLogger("experience_sync.recall")

# A pull that fails waits this long before the next try, doubling up to the cap.
_RETRY_FIRST = 1.0
_RETRY_CAP = 60.0


class Replica:
    """One instance's replica of its source agent.

    :param path: the SQLite file.
    :param agent_id: the source agent.
    :param config: the ``recall`` section.
    :param transport: pulls state (``fetch_state``); may be shared with the worker.
    :param acknowledged_below: returns the smallest outbox sequence the hub has
        not acknowledged (every event below it is merged at the hub).
    :param rankers, rerankers, embedder: the ranking plugins (as the hub's).
    :param emit: reports ``recall.pull`` and ``recall.error`` events.
    """

    def __init__(
        self,
        path: str | Path,
        agent_id: str,
        config: RecallConfig,
        transport: Transport,
        acknowledged_below: Callable[[], int],
        *,
        rankers: Sequence[Ranker],
        rerankers: Sequence[Reranker] = (),
        embedder: Embedder | None = None,
        emit: Callable[..., None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.agent_id = agent_id
        self.config = config
        self.transport = transport
        self.acknowledged_below = acknowledged_below
        self.rankers = list(rankers)
        self.rerankers = list(rerankers)
        self.embedder = embedder
        self._emit = emit
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        self._pull_lock = threading.Lock()
        self.index = FtsIndex(self._conn)
        self._pending: list[SearchDoc] = []
        self._pending_lock = threading.Lock()
        self._vectors: VectorTable | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_pull: float | None = None
        self.last_error: str | None = None
        self._pulled = threading.Event()
        if self.cursor is not None:
            self._pulled.set()

    # ------------------------------------------------------------------ state

    @property
    def cursor(self) -> int | None:
        """The source agent's cursor the replica reflects (``None``: never pulled)."""
        with self._lock:
            return self.index.cursor(self.agent_id)

    def count(self, kind: str | None = None) -> int:
        """How many documents the replica holds (of one kind)."""
        self._flush_local()
        with self._lock:
            return self.index.count(self.agent_id, kind)

    # ------------------------------------------------------------------ writes

    def note(self, event: ExperienceEvent) -> None:
        """Make an event just recorded searchable (read-your-writes); cheap, never blocks."""
        doc = doc_of_event(event)
        if doc is not None:
            with self._pending_lock:
                self._pending.append(doc)

    def _flush_local(self) -> None:
        with self._pending_lock:
            docs, self._pending = self._pending, []
        if not docs:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self.index.upsert(self.agent_id, docs, self._embed(docs))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLITE_FULL has rolled back already
                    self._conn.execute("ROLLBACK")
                raise
            self._vectors_add(docs)

    def refresh(self, timeout: float = 30.0) -> bool:
        """Pull what changed at the hub now; ``False`` (and the reason in ``last_error``) on failure."""
        try:
            self._pull(timeout)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self._emit is not None:
                self._emit("recall.error", data={"error": self.last_error})
            return False
        return True

    def _pull(self, timeout: float) -> None:
        with self._pull_lock:
            # Every event below this sequence was acknowledged, so merged at the
            # hub before the fetch starts: its local document can go.
            below = self.acknowledged_below()
            since = self.cursor
            started = time.monotonic()
            state = self.transport.fetch_state(since, timeout=timeout)
            self._flush_local()
            docs = _documents(state)
            with self._lock:
                if state.reset:
                    # A forget at the hub since our cursor: the answer is the
                    # whole state; what it does not list is gone, for good.
                    self._conn.execute("PRAGMA secure_delete=ON")
                self._conn.execute("BEGIN")
                try:
                    forgotten = self.index.drop_merged(self.agent_id) if state.reset else []
                    self.index.upsert(self.agent_id, docs, self._embed(docs))
                    dropped = self.index.drop_local(self.agent_id, below)
                    evicted = self.index.evict(self.agent_id, "memory", self.config.max_memories)
                    self.index.set_cursor(self.agent_id, state.cursor)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # SQLITE_FULL has rolled back already
                        self._conn.execute("ROLLBACK")
                    raise
                finally:
                    if state.reset:
                        self._conn.execute("PRAGMA secure_delete=OFF")
                if state.reset:
                    self._scrub()
                    self._vectors = None  # rebuilt from the file on the next vector search
                self._vectors_add(docs)
                if self._vectors is not None:
                    self._vectors.remove([*dropped, *evicted])
            self.last_pull = time.time()
            self.last_error = None
            self._pulled.set()
            if self._emit is not None:
                self._emit(
                    "recall.pull",
                    data={
                        "since": since, "cursor": state.cursor, "changed": len(docs),
                        "local_dropped": len(dropped), "evicted": len(evicted),
                        "reset": state.reset, "forgotten": len(forgotten),
                        "seconds": round(time.monotonic() - started, 4),
                    },
                )

    def _scrub(self) -> None:
        # After a reset pull: merge the index's segments (deleted documents'
        # terms leave with them) and empty the WAL of the old page images.
        self._conn.execute("PRAGMA secure_delete=ON")
        try:
            self.index.optimize(self.agent_id)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.execute("PRAGMA secure_delete=OFF")

    def wait_pulled(self, timeout: float) -> bool:
        """Wait until the replica holds at least one pull (the deploy)."""
        return self._pulled.wait(timeout)

    # ------------------------------------------------------------------ vectors

    def _embed(self, docs: Sequence[SearchDoc]) -> dict[DocKey, bytes] | None:
        if self.embedder is None or not docs:
            return None
        matrix = unit_rows(self.embedder.embed([d.text for d in docs]))
        return {d.doc_key: row.tobytes() for d, row in zip(docs, matrix, strict=True)}

    def _vectors_add(self, docs: Sequence[SearchDoc]) -> None:
        # Called with the lock held; the table is built on the first vector search.
        if self._vectors is None or self.embedder is None or not docs:
            return
        self._vectors.upsert([d.doc_key for d in docs], unit_rows(
            self.embedder.embed([d.text for d in docs])
        ))

    def _vector_table(self) -> VectorTable | None:
        if self.embedder is None:
            return None
        with self._lock:
            if self._vectors is None:
                table = VectorTable(self.embedder.dim)
                keys: list[DocKey] = []
                rows: list[FloatArray] = []
                for key, blob in self.index.embeddings(self.agent_id):
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if len(vec) == self.embedder.dim:
                        keys.append(key)
                        rows.append(vec)
                if keys:
                    table.upsert(keys, np.vstack(rows))
                self._vectors = table
            return self._vectors

    # ------------------------------------------------------------------ search

    def search(self, query: SearchQuery) -> SearchResults:
        """Rank the replica's documents for ``query`` (offline; includes local writes)."""
        self._flush_local()
        return run_search(
            _ReplicaCorpus(self),
            query,
            self.rankers,
            self.rerankers,
            weights=self.config.weights or None,
            rrf_k=self.config.rrf_k,
        )

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Pull now and then every ``pull_interval`` seconds (0: only on :meth:`refresh`)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"experience-sync-replica-{self.agent_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        delay = _RETRY_FIRST
        interval = self.config.pull_interval
        while not self._stop.is_set():
            try:
                self._pull(timeout=max(5.0, interval * 5))
                ok = True
            except NotImplementedError as exc:
                # A transport that cannot pull (a test double): local writes only.
                self.last_error = str(exc)
                return
            except Exception as exc:
                ok = False
                if not self._stop.is_set():
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if self._emit is not None:
                        self._emit("recall.error", data={"error": self.last_error})
            if interval <= 0 and ok:
                return
            wait = interval if ok else delay
            delay = _RETRY_FIRST if ok else min(_RETRY_CAP, delay * 2)
            self._wake.wait(wait)
            self._wake.clear()

    def close(self, timeout: float = 2.0) -> None:
        """Stop pulling, write what is pending and close the file.

        A pull still waiting on the network after ``timeout`` is abandoned
        (closing the transport interrupts it); its changes are not written.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        try:
            self._flush_local()
        except sqlite3.Error as exc:
            # A full disk: the pending documents are read-your-writes copies of
            # events in the outbox; the hub's copies come with the next pull.
            log.warning("replica of %s: local writes not saved: %s", self.agent_id, exc)
        finally:
            with self._lock:
                self._conn.close()



def _documents(state: AgentState) -> list[SearchDoc]:
    return [
        *(doc_of_memory(m, with_body=True) for m in state.memories),
        *(doc_of_knowledge(k, with_body=True) for k in state.knowledge),
        *(doc_of_skill(s, with_body=True) for s in state.skills),
    ]


class _ReplicaCorpus(Corpus):
    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self.agent_id = replica.agent_id
        self.embedder = replica.embedder
        self.min_similarity = replica.config.min_similarity

    def lexical(self, query: SearchQuery, limit: int) -> list[tuple[DocKey, float]]:
        r = self._replica
        with r._lock:
            return r.index.lexical(r.agent_id, query.q, query.kinds, query.knowledge_status, limit)

    def vector(self, vector: FloatArray, limit: int) -> list[tuple[DocKey, float]]:
        table = self._replica._vector_table()
        if table is None:
            return []
        vec = unit_rows(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        return table.search(vec, limit)

    def docs(self, keys: Sequence[DocKey]) -> dict[DocKey, SearchDoc]:
        r = self._replica
        with r._lock:
            return r.index.docs(r.agent_id, keys)

    @property
    def cursor(self) -> int:
        return self._replica.cursor or 0
