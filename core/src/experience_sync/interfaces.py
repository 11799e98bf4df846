"""The small abstract interfaces that plugins register through the hooks.

Each collection hook registers a *factory* under a name. A factory is called
with keyword arguments documented below and returns an object implementing
one of these interfaces:

========================  =====================================  ==========================
hook                      factory signature                      returns
========================  =====================================  ==========================
register_protocols        ``factory(config, manager)``           :class:`SyncProtocol`
register_transports       ``factory(config, agent_id)``          :class:`Transport`
register_similarity_...   ``factory(config)``                    :class:`SimilarityMethod`
register_conflict_...     ``factory(config)``                    :class:`ConflictResolver`
register_skill_aggr...    ``factory(config)``                    :class:`SkillAggregator`
register_embedders        ``factory(config)``                    :class:`Embedder`
register_vector_indexes   ``factory(dim)``                       :class:`VectorIndex`
register_stores           ``factory(url)``                       :class:`Store`
========================  =====================================  ==========================
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from experience_sync.models import (
    AgentState,
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    ExperienceEvent,
    MergeResult,
)
from experience_sync.units import UnitKind

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from experience_sync.config import ExperienceSyncConfig
    from experience_sync.forgetting import ForgetRecord
    from experience_sync.recall.documents import SearchDoc
    from experience_sync.recall.models import SearchQuery, SearchResults
    from experience_sync.stores.state import ChangeSet, LogEntry, StoredAgent, StoredRow

    FloatArray = npt.NDArray[np.float32]
    #: One new memory to match: ``(normalized, embedding, original_text)``.
    MatchQuery = tuple[str, FloatArray | None, str | None]

#: ``on_retry(attempt, delay, reason, status)``: how a transport reports a retry.
OnRetry = Callable[[int, float, str, "int | None"], None]

RequestKind = UnitKind


# --------------------------------------------------------------------------- transports


@dataclass
class SyncRequest:
    """One unit an instance ships to the hub.

    :param kind: ``events`` (streaming), ``batch`` (lumped) or ``checkin``.
    :param agent_id: the source agent the unit is for.
    :param payload: the wire model for that kind.
    :param compression: for batches, ``none``, ``gzip`` or ``zstd``.
    :param meta: what the instance tells the hub about itself (``backlog``,
        ``protocol``); HTTP transports send it as ``X-Experience-Sync-*``
        headers, the WebSocket transport as the frame's ``meta``.
    """

    kind: RequestKind
    agent_id: str
    payload: EventsRequest | ExperienceBatch | CheckIn
    compression: Literal["none", "gzip", "zstd"] = "none"
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def unit_id(self) -> str:
        """The unit's idempotency id: the batch or check-in id, else the first event's id."""
        if isinstance(self.payload, ExperienceBatch):
            return self.payload.batch_id
        if isinstance(self.payload, CheckIn):
            return self.payload.checkin_id
        return self.payload.events[0].event_id if self.payload.events else ""

    @property
    def event_count(self) -> int:
        """How many events the unit carries."""
        return len(self.payload.events)


class Transport(abc.ABC):
    """Ships :class:`SyncRequest` units to a hub and returns its :class:`MergeResult`.

    ``send`` blocks (it is called from the instance's worker thread) and
    raises :class:`~experience_sync.errors.TransportError` subclasses:
    :class:`~experience_sync.errors.RetryableError` for what is worth trying
    again, :class:`~experience_sync.errors.RejectedError` for what is not.
    """

    name: str = "transport"
    #: Seconds one shipment may take, retries included: the worker's deadline
    #: for each ``send_many`` call.
    timeout: float = 30.0
    #: Set by the instance's worker before it starts: a transport that retries
    #: calls ``on_retry(attempt, delay, reason, status)`` before each retry, so
    #: retries are counted and reported (``sync.retry``). ``None``: not reported.
    on_retry: OnRetry | None = None

    @abc.abstractmethod
    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        """Deliver one unit and return the hub's result once it is committed."""

    def send_many(
        self, requests: Sequence[SyncRequest], *, timeout: float
    ) -> list[MergeResult | BaseException]:
        """Deliver several units; transports that can pipeline override this.

        Returns one entry per request, in order: the result, or the exception
        that request ended with.
        """
        out: list[MergeResult | BaseException] = []
        for request in requests:
            try:
                out.append(self.send(request, timeout=timeout))
            except Exception as exc:
                out.append(exc)
        return out

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        """Draw the source agent's merged state back (changes since a cursor)."""
        raise NotImplementedError(f"transport {self.name!r} cannot pull state")

    def search(self, query: SearchQuery, *, timeout: float = 30.0) -> SearchResults:
        """Ask the hub's ranked search (``experience-sync search``; optional)."""
        raise NotImplementedError(f"transport {self.name!r} cannot search the hub")

    def close(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Release connections."""


class MockTransport(Transport):
    """A transport that hands each request to ``handler``; for tests.

    >>> t = MockTransport(lambda req: MergeResult(events_received=req.event_count))
    """

    name = "mock"

    def __init__(
        self,
        handler: Callable[[SyncRequest], MergeResult],
        state_handler: Callable[[int | None], AgentState] | None = None,
    ) -> None:
        self.handler = handler
        self.state_handler = state_handler
        self.requests: list[SyncRequest] = []
        self.closed = False

    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        """Keep ``request`` in :attr:`requests` and return what ``handler`` makes of it."""
        self.requests.append(request)
        return self.handler(request)

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        """What ``state_handler`` returns for ``since`` (without one, ``NotImplementedError``)."""
        if self.state_handler is None:
            return super().fetch_state(since, timeout=timeout)
        return self.state_handler(since)

    def close(self) -> None:
        """Set :attr:`closed`."""
        self.closed = True


# --------------------------------------------------------------------------- protocols


@dataclass
class OutboxItem:
    """An event waiting in the instance's outbox."""

    sequence: int
    event: ExperienceEvent
    lane: str


class SyncProtocol(abc.ABC):
    """Decides which recorded events a protocol ships, when, and in what unit.

    The instance worker owns one outbox; each event is routed at record time to
    the *lane* of the first enabled protocol whose :meth:`accepts` is true.
    The worker asks each protocol :meth:`due` and, when due, gives it the
    lane's pending items to turn into requests with :meth:`build_requests`.
    """

    name: str = "protocol"
    #: Whether :meth:`build_requests` reads ``context.state()`` (the instance then
    #: keeps its memories locally for it).
    uses_state: bool = False
    #: Routing order when the instance runs several protocols: lower ranks are
    #: offered each event first (built-ins: streaming 0, lumped 2, check_in 3).
    rank: int = 1

    @classmethod
    def enabled(cls, config: ExperienceSyncConfig) -> bool:
        """Whether ``config`` turns this protocol on when no protocol is named.

        The instance then runs ``config.default_protocol`` plus every
        registered protocol whose ``enabled`` is true, ordered by :attr:`rank`.
        Default: only when it is the default protocol.
        """
        return False

    @abc.abstractmethod
    def accepts(self, event: ExperienceEvent) -> bool:
        """Whether this protocol ships the event (else it falls to the next one)."""

    @abc.abstractmethod
    def due(self, now: float, pending: int) -> bool:
        """Whether to ship now, given monotonic ``now`` and the lane's pending count."""

    @abc.abstractmethod
    def next_due(self, now: float) -> float | None:
        """Monotonic time of the next scheduled shipment (``None``: only on demand)."""

    @abc.abstractmethod
    def build_requests(
        self, items: Sequence[OutboxItem], context: ProtocolContext
    ) -> list[tuple[SyncRequest, list[int]]]:
        """Turn pending items into requests, each with the sequences it carries."""

    def shipped(self, now: float) -> None:  # noqa: B027 - optional hook
        """Called after a shipment was attempted, to schedule the next one."""

    @property
    def max_items(self) -> int:
        """How many pending items to offer :meth:`build_requests` at once."""
        return 1000


@dataclass
class ProtocolContext:
    """What a protocol may need from its instance to build requests."""

    instance_id: str
    agent_id: str
    started_at: float
    state: Callable[[], Any] = field(default=lambda: None)
    summary: Callable[[], Any] = field(default=lambda: None)


# --------------------------------------------------------------------------- hub merge plugins


@dataclass(frozen=True)
class SimilarityMatch:
    """What a :class:`SimilarityMethod` found for a new memory.

    :param memory_id: the stored memory.
    :param score: its similarity (method-specific scale, 0..1).
    :param contradiction: ``None`` for a duplicate (merge it); otherwise why the
        two texts, though near, say different things (``"negation"``,
        ``"number"``, ``"name"``): the engine counts that as a conflict, never
        as a duplicate.
    """

    memory_id: str
    score: float
    contradiction: str | None = None

    @property
    def is_duplicate(self) -> bool:
        """Whether the new memory duplicates the stored one."""
        return self.contradiction is None


class SimilarityMethod(abc.ABC):
    """Finds the stored memory a new one duplicates, if any.

    The hub owns one instance per source agent. It is told about every stored
    memory with :meth:`add` (once), and asked for the best match of a new one
    with :meth:`best_match`; the best match at or above ``threshold`` wins.

    ``text`` is the original (un-normalized) content: methods use it to spot
    names (capitalized words), so pass it when you have it. :meth:`match`
    also reports a near memory that contradicts the new one (negation, changed
    number, changed name or place), and :meth:`match_many` matches a batch at
    once, which vector indexes answer much faster than one query at a time.
    """

    name: str = "similarity"
    threshold: float = 0.85

    @abc.abstractmethod
    def add(
        self,
        memory_id: str,
        normalized: str,
        embedding: FloatArray | None,
        text: str | None = None,
    ) -> None:
        """Index a stored memory."""

    @abc.abstractmethod
    def best_match(
        self, normalized: str, embedding: FloatArray | None, text: str | None = None
    ) -> tuple[str, float] | None:
        """``(memory_id, score)`` of the best stored duplicate above threshold, or ``None``."""

    def match(
        self, normalized: str, embedding: FloatArray | None, text: str | None = None
    ) -> SimilarityMatch | None:
        """The best duplicate, else the best contradicting near memory, else ``None``."""
        found = self.best_match(normalized, embedding, text)
        return None if found is None else SimilarityMatch(found[0], found[1])

    def match_at(
        self,
        normalized: str,
        embedding: FloatArray | None,
        text: str | None,
        threshold: float,
    ) -> SimilarityMatch | None:
        """:meth:`match` against ``threshold`` instead of :attr:`threshold`.

        The merge judge asks for candidates down to its zone's low end, below
        the method's own threshold. The default sets :attr:`threshold` for the
        one call (the hub holds the agent's lock around every use of a
        method), which is right for a method that reads it on each match;
        override it when the threshold is baked into an index.
        """
        saved = self.threshold
        self.threshold = threshold
        try:
            return self.match(normalized, embedding, text)
        finally:
            self.threshold = saved

    def match_many(self, queries: Sequence[MatchQuery]) -> list[SimilarityMatch | None]:
        """:meth:`match` for each query, against the stored memories only.

        Queries do not see each other: to catch duplicates inside one batch,
        :meth:`add` the new memories of a batch before matching the next one.
        """
        return [self.match(normalized, emb, text) for normalized, emb, text in queries]

    def add_many(
        self, items: Sequence[tuple[str, str, FloatArray | None, str | None]]
    ) -> None:
        """:meth:`add` for each ``(memory_id, normalized, embedding, text)``."""
        for memory_id, normalized, emb, text in items:
            self.add(memory_id, normalized, emb, text)

    def remove(self, memory_id: str) -> None:  # noqa: B027 - optional
        """Forget a stored memory."""

    @property
    def needs_embeddings(self) -> bool:
        """Whether :meth:`add` and :meth:`best_match` need an embedding."""
        return False

    def bind_embedder(self, embedder: Embedder) -> None:  # noqa: B027 - optional
        """Be given the hub's embedder (called once, before the first :meth:`add`).

        A method that :attr:`needs_embeddings` may embed more than the
        memories it is handed: the built-in ``embedding`` method embeds the
        one word two near memories swap, to tell a synonym from another thing.
        """


@dataclass
class ContestedValue:
    """One side of a conflict: a value with who said it, when, and how surely."""

    value: Any
    confidence: float
    timestamp: datetime
    lamport: int
    instance_id: str
    trust: float = 1.0


@dataclass
class Resolution:
    """A conflict resolver's decision: apply ``value`` now, or queue for review."""

    action: Literal["apply", "keep", "queue"]
    value: Any = None
    confidence: float | None = None


class ConflictResolver(abc.ABC):
    """Resolves a contested value (``latest_wins``, ``weighted_merge``, ``manual_review``)."""

    name: str = "resolver"

    @abc.abstractmethod
    def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Resolution:
        """Decide between the stored value and an incoming one."""


class SkillAggregator(abc.ABC):
    """Combines instances' latest proficiency reports into the agent's proficiency."""

    name: str = "aggregator"

    @abc.abstractmethod
    def aggregate(self, reports: Sequence[tuple[float, int]]) -> float:
        """Aggregate ``(proficiency, invocations)`` reports into one value in 0..1."""


class Embedder(abc.ABC):
    """Turns text into vectors (L2-normalised float32 rows)."""

    name: str = "embedder"
    dim: int = 384

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array."""


class VectorIndex(abc.ABC):
    """Nearest-neighbour search over stored vectors by inner product (cosine)."""

    name: str = "index"

    @abc.abstractmethod
    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Add vectors under integer ids."""

    @abc.abstractmethod
    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Top-``k`` scores and ids per query; missing slots have id ``-1``."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of stored vectors."""


# --------------------------------------------------------------------------- stores


@dataclass
class TokenRecord:
    """A hub access token, stored hashed."""

    token_id: str
    token_hash: str
    agent_id: str
    instance_id: str
    scope: Literal["write", "read", "review", "admin"]
    created_at: datetime
    revoked: bool = False


class Store(abc.ABC):
    """Durable hub storage: the append-only event log plus the materialized state.

    :meth:`commit` writes a :class:`ChangeSet` (log rows, state rows, applied
    unit ids) in one transaction: after it returns, the data survives a crash.
    State rows are opaque ``(key, version, body)`` rows per table (see
    :mod:`experience_sync.stores.state`); the merge engine interprets them.

    One writer, or several. By default a store has one writing process (the
    built-in ``sqlite`` store): the engine keeps each agent's state in memory
    and trusts it. A store that several hub processes may write at once keeps
    a per-agent *write version* instead, and

    - :meth:`load_agent` reads the agent as one consistent snapshot and
      returns its version in :attr:`StoredAgent.version`;
    - :meth:`agent_version` returns the current version (not ``None``);
    - :meth:`commit`, inside its transaction and holding the agent exclusively
      (a row lock), refuses with :class:`~experience_sync.errors.StaleStateError`
      a change set whose ``expect_version`` is not the agent's version, and
      otherwise adds one to it; :meth:`reset_state` adds one too.

    The engine then compares versions before using its in-memory state and
    reloads the agent when another process committed since; a commit that
    raced with another is refused, reloaded and merged again.
    """

    name: str = "store"

    @abc.abstractmethod
    def load_agent(self, agent_id: str) -> StoredAgent:
        """Load one agent's materialized state (empty if unknown)."""

    @abc.abstractmethod
    def agents(self) -> list[str]:
        """Ids of the agents with data."""

    @abc.abstractmethod
    def seen_events(self, agent_id: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are already in the agent's log."""

    @abc.abstractmethod
    def applied_unit(self, agent_id: str, unit_id: str) -> MergeResult | None:
        """The stored result of an already applied batch or check-in, if any."""

    @abc.abstractmethod
    def iter_units(self, agent_id: str) -> Iterator[tuple[str, MergeResult]]:
        """Every applied batch or check-in of the agent: ``(unit_id, stored result)``.

        Replay into another store copies them, so a re-sent unit is still
        answered as a duplicate there.
        """

    @abc.abstractmethod
    def commit(self, agent_id: str, changes: ChangeSet) -> None:
        """Atomically append to the log, write the changed state and record ``changes.units``.

        A commit that would log an entry id the agent's log already holds (or
        one id twice) is refused whole. A store that several processes write
        also checks ``changes.expect_version`` (see the class docstring).
        """

    def agent_version(self, agent_id: str) -> int | None:
        """The agent's current write version, or ``None`` for a single-writer store.

        ``None`` (the default) tells the engine that no other process writes
        this store, so its in-memory state of an agent cannot go stale. A
        store shared by several hub processes returns the version its
        commits maintain (0 for an agent it does not hold).
        """
        return None

    # stored parses (optional: without them every text is read again at load)

    #: Whether memory rows keep their parse
    #: (:attr:`~experience_sync.stores.state.StoredRow.parsed`). Then
    #: :meth:`commit` writes a row's ``parsed`` when it has one and keeps the
    #: stored one when it has ``None``, :meth:`load_agent` returns it, and
    #: :meth:`save_parsed` fills it in. Otherwise the engine makes no parses
    #: for the store.
    keeps_parsed: bool = False

    def save_parsed(self, agent_id: str, parsed: Mapping[str, bytes]) -> None:  # noqa: B027
        """Keep the parses a load made again (memory id -> ``StoredRow.parsed``).

        A cache, not a change: no cursor or write version moves, and a memory
        no longer stored is skipped (a parse of another text is only a miss:
        the loader checks each against its text). Called only when
        :attr:`keeps_parsed`, a batch at a time while the agent loads.
        """

    # reads in place (optional: otherwise an agent is loaded before it is read)

    #: Whether the store answers reads of an agent's state without the agent
    #: being loaded: :meth:`agent_cursor`, :meth:`read_rows` and
    #: :meth:`page_rows` work. The engine then serves a page of memories, the
    #: skills, the knowledge and (with :attr:`text_index`) a ranked search of
    #: an agent that is not in memory, or still loading after a restart, from
    #: the store, instead of waiting for the agent's load. Each call reads one
    #: committed state: never part of a commit.
    reads_in_place: bool = False

    def agent_cursor(self, agent_id: str) -> int:
        """The cursor of the agent's last commit (0 for an agent the store does not hold)."""
        raise NotImplementedError(f"store {self.name!r} does not read in place")

    def read_rows(self, agent_id: str, table: str, keys: Sequence[str]) -> list[StoredRow]:
        """The stored rows of ``keys`` in state table ``table`` (those that exist, in any order)."""
        raise NotImplementedError(f"store {self.name!r} does not read in place")

    def page_rows(
        self, agent_id: str, table: str, offset: int, limit: int
    ) -> tuple[list[StoredRow], int]:
        """Rows ``offset`` to ``offset + limit`` of ``table`` in :meth:`load_agent`'s order, and how many it holds.

        Memory rows need only ``key``, ``version`` and ``body``. The page and
        the count are of the same committed state.
        """
        raise NotImplementedError(f"store {self.name!r} does not read in place")

    @abc.abstractmethod
    def iter_log(self, agent_id: str) -> Iterator[LogEntry]:
        """The agent's log entries in arrival order."""

    # compaction and retention (optional: a store without them cannot compact)

    def compact(
        self, agent_id: str, snapshot: LogEntry, expect_version: int | None = None
    ) -> int:
        """Replace the log entries up to ``snapshot.request`` by ``snapshot``, atomically.

        The removed entries' ids stay known (:meth:`seen_events` still
        reports them, :meth:`iter_compacted` lists them) and ``snapshot``
        takes their place at the head of the log, so :meth:`iter_log` yields
        it before every entry it does not cover. A store that several
        processes write refuses with
        :class:`~experience_sync.errors.StaleStateError` unless the agent is
        at ``expect_version`` (the version the snapshot was read at); a
        compaction changes no state, so it does not advance the version.

        :returns: how many entries were removed.
        """
        raise NotImplementedError(f"store {self.name!r} cannot compact its log")

    def iter_compacted(self, agent_id: str) -> Iterator[str]:
        """The ids of the agent's log entries that a compaction removed."""
        return iter(())

    def rewrite_log(self, agent_id: str, bodies: Mapping[str, str]) -> int:
        """Replace the bodies of the agent's log entries named in ``bodies`` (entry id -> body).

        Retention uses it to drop an expired event's payload while the entry
        (its id, kind and position) stays. Returns how many were rewritten.
        """
        raise NotImplementedError(f"store {self.name!r} cannot rewrite its log")

    # search (optional: a store without a text index is searched in memory)

    #: Whether the store keeps a text index of search documents. Then
    #: :meth:`commit` writes ``changes.documents`` and records ``changes.cursor``
    #: as the index's cursor in the same transaction, and :meth:`search_text`,
    #: :meth:`search_cursor` and :meth:`reindex` work. Otherwise the engine
    #: keeps the index in memory (an SQLite FTS5 database) and ignores these.
    text_index: bool = False

    def search_text(
        self,
        agent_id: str,
        text: str,
        kinds: Sequence[str],
        knowledge_status: str,
        limit: int,
    ) -> list[tuple[tuple[str, str], float]]:
        """BM25-ranked documents matching ``text``: ``((kind, key), score)``, best first.

        Only documents of ``kinds``; knowledge only with ``knowledge_status``
        (``integrated``, ``pending`` or ``all``). Higher scores are better.
        """
        raise NotImplementedError(f"store {self.name!r} has no text index")

    def search_cursor(self, agent_id: str) -> int | None:
        """The agent cursor the text index reflects (``None``: not indexed)."""
        return None

    def reindex(self, agent_id: str, documents: Sequence[SearchDoc], cursor: int) -> None:
        """Replace the agent's search documents (a store made before search, or after replay)."""
        raise NotImplementedError(f"store {self.name!r} has no text index")

    @abc.abstractmethod
    def reset_state(self, agent_id: str) -> None:
        """Drop the agent's materialized state, for an in-place replay.

        The log, applied units and instance statuses stay; a shared store
        advances the agent's write version, so other processes reload it.
        """

    # forgetting (optional: a store without it answers forget requests with an error)

    def forget(
        self,
        agent_id: str,
        entry_ids: Sequence[str],
        forget_id: str,
        changes: ChangeSet,
        record: ForgetRecord,
        bodies: Mapping[str, str] | None = None,
    ) -> None:
        """Forget log entries for good, in one transaction.

        - rewrite each entry of ``entry_ids`` in place: kind ``forgotten``,
          body :func:`~experience_sync.forgetting.redacted_body` of
          ``forget_id`` (its id, position and request stay, so
          :meth:`seen_events` still reports it and a resend is a duplicate);
        - drop the agent's materialized state and search documents, as
          :meth:`reset_state` does (instance statuses and applied units stay);
        - commit ``changes`` as :meth:`commit` does (the tombstone entry and
          the state rebuilt without the forgotten entries; a store that
          several processes write checks ``changes.expect_version`` and
          advances the version);
        - replace the bodies of the entries named in ``bodies`` (a compacted
          log's snapshot, rewritten without the forgotten rows);
        - append ``record`` to the audit trail (:meth:`forget_records`).

        After the commit the store removes what is left of the text where
        its storage keeps it (freed pages, old index segments, journal files).
        """
        raise NotImplementedError(f"store {self.name!r} cannot forget")

    def forget_records(self, agent_id: str | None = None) -> list[ForgetRecord]:
        """The audit trail of forgets, oldest first (of one agent, or of all)."""
        raise NotImplementedError(f"store {self.name!r} cannot forget")

    # tokens
    @abc.abstractmethod
    def put_token(self, record: TokenRecord) -> None:
        """Store a token record."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """Find a token by its hash."""

    @abc.abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token record."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token; whether it existed."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the storage."""


def __getattr__(name: str) -> Any:
    """``FloatArray`` and ``MatchQuery``, the aliases that need numpy, made on first use.

    ``FloatArray`` is ``numpy.typing.NDArray[numpy.float32]``; ``MatchQuery``
    is ``tuple[str, FloatArray | None, str | None]``. Importing the interfaces
    (a transport, a protocol) does not load numpy.
    """
    if name not in ("FloatArray", "MatchQuery"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import numpy
    import numpy.typing

    float_array = numpy.typing.NDArray[numpy.float32]
    globals().update(
        FloatArray=float_array, MatchQuery=tuple[str, float_array | None, str | None]
    )
    return globals()[name]
