"""The shapes the merge engine and a :class:`~experience_sync.interfaces.Store` exchange.

A store is deliberately dumb: it keeps an append-only log of :class:`LogEntry`
rows and, per table, rows of ``(key, version, body)`` whose JSON body only the
engine interprets. So a third-party store (Postgres, ...) implements a few
tables and never needs to track the merge rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from experience_sync.models import ExperienceEvent, MergeResult
from experience_sync.recall.documents import SearchDoc

#: The materialized state tables, in the order a store loads them.
TABLES: tuple[str, ...] = (
    "memories",
    "skills",
    "knowledge",
    "characteristics",
    "reviews",
    "instances",
)


@dataclass
class LogEntry:
    """One row of an agent's append-only log.

    :param entry_id: the event id (unique per agent); for a review decision
        ``review:<review_id>``; for a snapshot ``snapshot:<cursor>``.
    :param kind: ``event`` (body is the event JSON), ``decision`` (body is
        ``{"review_id", "accept", "timestamp"}``) or ``snapshot`` (the state
        at cursor ``request``, which replaced the log entries it covers: see
        :mod:`experience_sync.hub.retention`).
        ``forget`` is a tombstone (body ``{"forget_id", "timestamp",
        "events"}``, id ``forget:<forget_id>``) and ``forgotten`` an entry a
        forget redacted (body ``{"forgotten": forget_id}``): replay skips the
        latter, and the former marks the cursor since which pulls get the
        whole state (see :mod:`experience_sync.hub.forget`).
        ``judgement`` is a merge judge's decision of one memory event (id
        ``judge:<event_id>``, body ``{"event_id", "memory_id", "outcome",
        "merged_text", "reason", "judge", "score"}``), logged with its
        request; replay applies it instead of asking a judge (see
        :mod:`experience_sync.hub.merge.judging`).
    :param body: the JSON text.
    :param unit_id: the batch or check-in id that carried it, if any.
    :param instance_id: the instance that sent it (or ``hub`` for decisions).
    :param request: the cursor of the commit that appended it; entries sharing
        it were merged as one request, which replay reproduces.
    """

    entry_id: str
    kind: Literal["event", "decision", "snapshot", "forget", "forgotten", "judgement"]
    body: str
    unit_id: str | None
    instance_id: str
    request: int

    @property
    def event(self) -> ExperienceEvent:
        """The logged event (only for ``kind == "event"``)."""
        return ExperienceEvent.model_validate_json(self.body)


@dataclass
class StoredRow:
    """One materialized state row.

    :param key: its id within the table (memory id, skill id, knowledge key, ...).
    :param version: the agent cursor of the commit that last changed it.
    :param body: JSON the engine wrote.
    :param content_hash: memories only: the normalized-content hash.
    :param embedding: memories only: the float32 vector bytes, if any.
    :param normalized: memories only: the normalized text (saves normalizing
        every memory again when the agent is loaded).
    :param parsed: memories only: what the similarity method read from the
        text (``experience_sync.hub.merge.similarity.dump_parsed``; saves
        reading every memory again when the agent is loaded). Optional for a
        store (:attr:`~experience_sync.interfaces.Store.keeps_parsed`): one
        that does not keep it loads ``None`` (the text is read again). On a
        write, ``None`` means unchanged: a store keeping it leaves the stored
        value (which the loader checks against the text).
    """

    key: str
    version: int
    body: str
    content_hash: str | None = None
    embedding: bytes | None = None
    normalized: str | None = None
    parsed: bytes | None = None


@dataclass
class StoredAgent:
    """One agent as loaded from a store: its cursor, statistics and state rows.

    :param version: the agent's write version when it was read, for a store
        that several processes write (see
        :meth:`~experience_sync.interfaces.Store.agent_version`); 0 otherwise.
    """

    cursor: int = 0
    meta: str | None = None
    rows: dict[str, list[StoredRow]] = field(default_factory=dict)
    version: int = 0


@dataclass
class ChangeSet:
    """Everything one ingestion changes, committed by a store in one transaction.

    :param cursor: the agent's cursor after the commit.
    :param log: entries to append, in arrival order.
    :param rows: per table, rows to insert or replace.
    :param meta: the agent's statistics JSON, if changed.
    :param units: ``(unit_id, result)`` of each applied batch or check-in to
        record (one for an ingestion; many when replay copies them).
    :param documents: the search documents of the changed memories, skills
        and knowledge items, for a store with a text index
        (:attr:`~experience_sync.interfaces.Store.text_index`), which writes
        them in the same transaction and records ``cursor`` as the index's.
    :param expect_version: the agent's write version the changes were derived
        from (set by the engine). A store that several processes write
        refuses the commit with :class:`~experience_sync.errors.StaleStateError`
        unless the agent is still at that version; a single-writer store
        ignores it.
    :param seen: entry ids of compacted log entries to remember as logged
        (replay or import copying a compacted log): a later commit or
        :meth:`~experience_sync.interfaces.Store.seen_events` treats them as
        already in the log.
    """

    cursor: int
    log: list[LogEntry] = field(default_factory=list)
    rows: dict[str, list[StoredRow]] = field(default_factory=dict)
    meta: str | None = None
    units: list[tuple[str, MergeResult]] = field(default_factory=list)
    expect_version: int | None = None
    documents: list[SearchDoc] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """Whether committing would change nothing."""
        return not (self.log or self.rows or self.meta or self.units or self.seen)
