"""MemoryMerger: deduplicates incoming memories into the source agent's memories.

Per new memory: exact duplicate by the hash of its normalized text first, then
the configured :class:`~experience_sync.interfaces.SimilarityMethod` (the best
stored match at or above its threshold). A match merges (field rules in
``docs/merging.md``); a near memory the method flags as a contradiction is a
conflict for the resolver; anything else is added. With
``memory_deduplication = false`` every memory is added.

A merge judge other than ``rules`` (``merge_strategy.judge``) decides the pairs
its :class:`~experience_sync.hub.merge.judging.JudgeDesk` wants instead of the
rules, and a pair found below the method's threshold but inside the judge
zone; on replay, the logged judgement decides.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.merge.conflicts import ConflictDesk, MergeContext, is_reconciliation
from experience_sync.hub.merge.judging import JudgeDesk, Judgement
from experience_sync.hub.merge.similarity import (
    EmbeddingSimilarity,
    JaccardSimilarity,
    dump_parsed,
    outcome,
    parse_version,
)
from experience_sync.interfaces import Embedder, FloatArray, SimilarityMatch, SimilarityMethod
from experience_sync.merge_judges import JudgedPair
from experience_sync.models import (
    ExperienceEvent,
    Memory,
    MemoryData,
    MergeOutcome,
    SupersededStatement,
    _as_utc,
)
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.stores.state import StoredRow
from experience_sync.text import content_hash, normalize

#: A memory lists at most this many (the latest) source events: a memory every
#: instance keeps re-reporting would otherwise grow, and be rewritten, forever.
#: ``access_count`` still counts every merge.
MAX_SOURCE_EVENTS = 200

#: A memory lists at most this many (the latest) statements it superseded.
MAX_SUPERSEDED = 20

# Shared by every memory that superseded nothing (most of them): an empty
# list each would cost 56 bytes per stored memory. Never mutated: a change
# builds a new list (see _record).
_NONE_SUPERSEDED: list[SupersededStatement] = []


def noisy_or(a: float, b: float) -> float:
    """``1 - (1 - a)(1 - b)``: two independent reports of one thing, bounded in 0..1."""
    return min(1.0, max(0.0, 1.0 - (1.0 - a) * (1.0 - b)))


def memory_id_for(cursor: int, n: int) -> str:
    """The id of the memory the ``n``-th log entry of request ``cursor`` added.

    ``n`` is the place of the adding event among its request's log entries
    (forgotten ones included), not a count of the memories added before it:
    when a forget rebuilds the agent, an event it forgot, or one that now
    merges where it used to add, changes no other memory's id, and an id is
    never given to another memory. Ids grow with the cursor, so new rows land
    at the end of the store's index instead of all over it; replay repeats the
    same requests and so gives the same ids.
    """
    return f"m{cursor:010x}{n:05x}"


# The fields set of every memory built with all its fields (all of them):
# one set shared instead of one each (about 730 bytes and one more object for
# the garbage collector to visit per memory). Never changed: pydantic's
# model_copy updates a copy of it, and assigning a field adds a name it holds.
_ALL_FIELDS_SET: set[str] = set(Memory.model_fields)


def _construct(values: dict[str, Any]) -> Memory:
    # Memory.model_construct without its per-field default handling: the hot
    # path builds every field itself from already validated data.
    memory = Memory.__new__(Memory)
    object.__setattr__(memory, "__dict__", values)
    object.__setattr__(
        memory,
        "__pydantic_fields_set__",
        _ALL_FIELDS_SET if values.keys() == _ALL_FIELDS_SET else set(values),
    )
    object.__setattr__(memory, "__pydantic_extra__", None)
    object.__setattr__(memory, "__pydantic_private__", None)
    return memory


_MEMORY_FIELDS = frozenset(Memory.model_fields)
_intern = sys.intern
_fromiso = datetime.fromisoformat


def _parse_current(blob: bytes | str | None) -> bool:
    """Whether a stored parse was written by this version of the text reading."""
    if blob is None:
        return False
    version = parse_version()
    if not version:
        return False
    head = blob[2 : 2 + len(version)]
    return (head if isinstance(head, str) else bytes(head).decode(errors="replace")) == version


def stored_memory(body: str) -> Memory:
    """A memory from a row the hub wrote (``Memory.model_dump_json``).

    The hub's own rows are trusted: read with orjson and built without
    validation, which ``Memory.model_validate_json`` would spend most of its
    time on; the strings most memories share (type, tags, instances) are
    interned. A row of another shape (a statement it superseded, a field
    missing or unknown) is validated.
    """
    d = orjson.loads(body)
    if type(d) is dict and d.keys() == _MEMORY_FIELDS and not d["superseded"]:
        try:
            d["memory_type"] = _intern(d["memory_type"])
            d["tags"] = list(map(_intern, d["tags"]))
            d["source_instances"] = list(map(_intern, d["source_instances"]))
            d["importance"] = float(d["importance"])
            d["confidence"] = float(d["confidence"])
            d["created_at"] = _as_utc(_fromiso(d["created_at"]))
            d["updated_at"] = _as_utc(_fromiso(d["updated_at"]))
        except (TypeError, ValueError):
            pass  # not the hub's usual shape: validated below
        else:
            d["superseded"] = _NONE_SUPERSEDED
            return _construct(d)
    m = Memory.model_validate_json(body)
    if not m.superseded:
        m.__dict__["superseded"] = _NONE_SUPERSEDED
    return m


#: Fewest memories in one request for which matching in a batch pays off.
_BATCH_MATCH_MIN = 8

#: Stored rows a load turns into memories and index entries at a time.
LOAD_CHUNK = 4096
#: Parses made again that a load hands its ``parsed_sink`` at once.
SAVE_PARSED_BATCH = 10_000


def _batches(method: SimilarityMethod) -> bool:
    # Only a method with a batch search of its own (one vector search for the
    # whole request) gains from matching a request at once; matching one by
    # one against an index that each added memory joins needs no second,
    # per-request index.
    return type(method).match_many is not SimilarityMethod.match_many


def _better(a: SimilarityMatch | None, b: SimilarityMatch | None) -> SimilarityMatch | None:
    # What one index over both sets would answer: the best duplicate, else
    # the best contradiction (ties keep the stored memory).
    if a is None or b is None:
        return a or b
    if a.is_duplicate != b.is_duplicate:
        return a if a.is_duplicate else b
    return a if a.score >= b.score else b


def _record(
    superseded: list[SupersededStatement], lost: SupersededStatement
) -> list[SupersededStatement]:
    """``superseded`` plus ``lost``, in timestamp order, the latest few kept."""
    out = sorted([*superseded, lost], key=lambda s: (s.timestamp, s.instance_id, s.event_id))
    return out[-MAX_SUPERSEDED:]


def _union(base: list[str], extra: Sequence[str]) -> list[str]:
    new = [x for x in dict.fromkeys(extra) if x not in base]
    return base + new if new else base


@dataclass
class RequestPlan:
    """What :meth:`MemoryMerger.prepare` computed for one request's memories.

    :param norms: normalized text and content hash by event id.
    :param embeddings: vectors by event id.
    :param batched: stored matches found in one batch, by event id.
    :param local: a small index of the memories this request added, which
        the batch could not see (only with a batch).
    :param local_added: how many memories ``local`` holds.
    :param stale: a memory changed since the batch ran: match one by one.
    """

    norms: dict[str, tuple[str, str]] = field(default_factory=dict)
    embeddings: dict[str, FloatArray] = field(default_factory=dict)
    batched: dict[str, SimilarityMatch | None] = field(default_factory=dict)
    local: SimilarityMethod | None = None
    local_added: int = 0
    stale: bool = False


class MemoryMerger:
    """One agent's memories, their exact-duplicate index and similarity index."""

    def __init__(self, strategy: MergeStrategyConfig, pm: ExperienceSyncPluginManager) -> None:
        self.strategy = strategy
        self.pm = pm
        self.dedup = strategy.memory_deduplication
        self.similarity: SimilarityMethod | None = None
        self.embedder: Embedder | None = None
        self.judges: JudgeDesk | None = None
        if self.dedup:
            self.similarity = pm.registry.create(
                "similarity_methods", strategy.similarity_method, strategy
            )
            if self.similarity is not None and self.similarity.needs_embeddings:
                self.embedder = pm.registry.create("embedders", strategy.embedder, strategy)
                if self.embedder is not None:
                    self.similarity.bind_embedder(self.embedder)
            self.judges = JudgeDesk(strategy, pm)
        self.memories: dict[str, Memory] = {}
        self.normalized: dict[str, str] = {}
        self.by_hash: dict[str, str] = {}
        self.embeddings: dict[str, FloatArray] = {}
        # Insertion-ordered, so rows are written (and later loaded) in creation order.
        self.dirty: dict[str, None] = {}
        # The built-in methods read a stored parse back at load (similarity.load_parsed).
        self._stores_parses = type(self.similarity) in (JaccardSimilarity, EmbeddingSimilarity)
        # Memories whose text changed since the last take_rows (their parse is written).
        self.reparsed: set[str] = set()
        # What changed after a cursor without a scan of every memory (a pull):
        # memory ids by when take_rows last wrote them, oldest first, each with
        # the highest version written up to then; complete for cursors from
        # _complete_after on (None: not tracked, state scans).
        self._written: dict[str, int] = {}
        self._written_top = 0
        self._complete_after: int | None = None

    # ------------------------------------------------------------------ per request

    def prepare(self, events: Sequence[ExperienceEvent]) -> RequestPlan:
        """Get a request's new memories ready: normalize, embed, match in batches.

        Vectors are computed in one embedder call (an event's own embedding is
        used when it has the embedder's dimension; exact duplicates of stored
        memories need none). With several memories to match, they are matched
        against the stored ones in one :meth:`SimilarityMethod.match_many`
        call (when the method has a batch search of its own); memories added
        earlier in the same request are then checked through a small index of
        their own. Otherwise each memory is matched when it is merged, against
        an index that already holds the ones added before it. Returns the
        plan that :meth:`merge` takes for each of the request's memories.
        """
        plan = RequestPlan()
        pending: list[ExperienceEvent] = []
        for ev in events:
            data = ev.data
            if isinstance(data, MemoryData):
                norm = normalize(data.content)
                digest = content_hash(norm)
                plan.norms[ev.event_id] = (norm, digest)
                if self.dedup and digest not in self.by_hash:
                    pending.append(ev)
        out = plan.embeddings
        if self.embedder is not None and pending:
            dim = self.embedder.dim
            todo: list[ExperienceEvent] = []
            for ev in pending:
                given = ev.memory.embedding
                if given is not None and len(given) == dim:
                    vec = np.asarray(given, dtype=np.float32)
                    length = float(np.linalg.norm(vec))
                    out[ev.event_id] = vec / length if length > 0 else vec
                else:
                    todo.append(ev)
            if todo:
                vectors = self.embedder.embed([ev.memory.content for ev in todo])
                for ev, vec in zip(todo, vectors, strict=True):
                    out[ev.event_id] = np.asarray(vec, dtype=np.float32)
        if (
            self.similarity is not None
            and len(pending) >= _BATCH_MATCH_MIN
            and _batches(self.similarity)
        ):
            queries = [
                (plan.norms[ev.event_id][0], out.get(ev.event_id), ev.memory.content)
                for ev in pending
            ]
            found = self.similarity.match_many(queries)
            plan.batched = {ev.event_id: m for ev, m in zip(pending, found, strict=True)}
            plan.local = self.pm.registry.create(
                "similarity_methods", self.strategy.similarity_method, self.strategy
            )
            if plan.local is not None and self.embedder is not None:
                plan.local.bind_embedder(self.embedder)
        return plan

    def _match(
        self, plan: RequestPlan, event_id: str, norm: str, embedding: FloatArray | None, text: str
    ) -> SimilarityMatch | None:
        assert self.similarity is not None
        if event_id in plan.batched and not plan.stale:
            found = plan.batched[event_id]
            if plan.local is not None and plan.local_added:
                found = _better(found, plan.local.match(norm, embedding, text))
            return found
        return self.similarity.match(norm, embedding, text)

    # ------------------------------------------------------------------ merging

    def merge(
        self,
        ctx: MergeContext,
        ev: ExperienceEvent,
        desk: ConflictDesk,
        plan: RequestPlan | None = None,
    ) -> None:
        """Merge one memory event (already known to be new to the log).

        :param plan: what :meth:`prepare` computed for the event's request;
            ``None`` for an event merged on its own (an accepted review).
        """
        if plan is None:
            plan = RequestPlan()
        data = ev.memory
        embedding = plan.embeddings.get(ev.event_id)
        cached = plan.norms.get(ev.event_id)
        if cached is None:
            norm = normalize(data.content)
            digest = content_hash(norm)
        else:
            norm, digest = cached
        if ctx.force and ctx.target is not None:
            self._supersede(ctx, ev, ctx.target, norm, digest, embedding, data.confidence, plan)
            return
        tally = ctx.result
        related: str | None = None
        reason: str | None = None
        if self.dedup:
            existing = self.by_hash.get(digest)
            if existing is not None:
                tally.outcome(ev.event_id, "duplicate", existing)
                self._merge_into(ctx, ev, existing)
                return
            if self.similarity is not None:
                if embedding is None and self.embedder is not None:
                    embedding = self.embedder.embed([data.content])[0]
                recorded = ctx.judgements.get(ev.event_id) if ctx.replay else None
                if recorded is not None and recorded.memory_id in self.memories:
                    # Replay: the logged decision, never the judge again.
                    self._judged(ctx, ev, desk, recorded, norm, digest, embedding, plan)
                    return
                found = self._match(plan, ev.event_id, norm, embedding, data.content)
                judging = self.judges is not None and self.judges.active and not ctx.replay
                if judging and self.judges is not None and (found is None or found.memory_id not in self.memories):
                    found = self.judges.probe(self.similarity, norm, embedding, data.content)
                    if found is not None and found.memory_id in self.memories:
                        # Below the threshold, in the zone: the rules add it unrelated.
                        verdict = self._ask(ctx, ev, found, False, "distinct", None)
                        if verdict is not None:
                            self._judged(ctx, ev, desk, verdict, norm, digest, embedding, plan)
                            return
                    found = None
                if found is not None and found.memory_id in self.memories:
                    kind = outcome(found.contradiction)
                    if judging:
                        verdict = self._ask(ctx, ev, found, True, kind, found.contradiction)
                        if verdict is not None:
                            self._judged(ctx, ev, desk, verdict, norm, digest, embedding, plan)
                            return
                    if kind == "duplicate":
                        tally.outcome(ev.event_id, "duplicate", found.memory_id)
                        self._merge_into(ctx, ev, found.memory_id)
                        return
                    if kind == "contradiction":
                        tally.outcome(
                            ev.event_id, "contradiction", found.memory_id,
                            reason=found.contradiction,
                        )
                        self._contradiction(
                            ctx, ev, desk, found.memory_id, norm, digest, embedding, plan
                        )
                        return
                    # Distinct: another name, place or thing in the same
                    # frame; both statements stay, the new one linked.
                    related, reason = found.memory_id, found.contradiction
        mid = self._add(ctx, ev, norm, digest, embedding, plan, related)
        if self.dedup:
            tally.outcome(
                ev.event_id, "distinct", mid, related, reason, listed=related is not None
            )

    # ------------------------------------------------------------------ the merge judge

    def _ask(
        self, ctx: MergeContext, ev: ExperienceEvent, found: SimilarityMatch, near: bool,
        kind: MergeOutcome, reason: str | None,
    ) -> Judgement | None:
        """The judge's decision of ``ev`` against ``found``, or ``None`` for the rules'."""
        assert self.judges is not None and self.similarity is not None
        pair = JudgedPair(
            ev.memory.content, self.memories[found.memory_id].content, found.memory_id,
            float(found.score), near, kind, reason, self.similarity.name,
        )
        if not self.judges.wants(pair):
            return None
        return self.judges.decide(ctx, ev.event_id, ev.source_instance, pair)

    def _judged(
        self,
        ctx: MergeContext,
        ev: ExperienceEvent,
        desk: ConflictDesk,
        verdict: Judgement,
        norm: str,
        digest: str,
        embedding: FloatArray | None,
        plan: RequestPlan,
    ) -> None:
        """Apply a judge's decision (made now, or read from the log on replay)."""
        mid, reason = verdict.memory_id, f"judge:{verdict.judge}"
        tally = ctx.result
        if verdict.outcome == "duplicate":
            tally.outcome(ev.event_id, "duplicate", mid, reason=reason)
            merged = tally.memories_merged
            self._merge_into(ctx, ev, mid)
            if verdict.merged_text and tally.memories_merged > merged:
                self._rewrite(ctx, mid, verdict.merged_text, plan)
        elif verdict.outcome == "contradiction":
            tally.outcome(ev.event_id, "contradiction", mid, reason=reason)
            self._contradiction(ctx, ev, desk, mid, norm, digest, embedding, plan)
        else:
            added = self._add(ctx, ev, norm, digest, embedding, plan, mid)
            tally.outcome(ev.event_id, "distinct", added, mid, reason)

    def _rewrite(self, ctx: MergeContext, mid: str, text: str, plan: RequestPlan) -> None:
        """Give a merged memory the text its judge proposed (indexes follow)."""
        m = self.memories[mid]
        norm = normalize(text)
        digest = content_hash(norm)
        if digest == m.normalized_hash:
            return
        if self.by_hash.get(m.normalized_hash) == mid:
            del self.by_hash[m.normalized_hash]
        self.by_hash.setdefault(digest, mid)
        embedding = self.embedder.embed([text])[0] if self.embedder is not None else None
        self.normalized[mid] = norm
        if embedding is not None:
            self.embeddings[mid] = np.asarray(embedding, dtype=np.float32)
        if self.similarity is not None:
            self.similarity.remove(mid)
            self.similarity.add(mid, norm, embedding, text)
            if self._stores_parses:
                self.reparsed.add(mid)
        plan.stale = True
        self.memories[mid] = m.model_copy(
            update={"content": text, "normalized_hash": digest, "version": ctx.cursor}
        )
        self.dirty[mid] = None

    # ------------------------------------------------------------------ adding

    def _add(
        self,
        ctx: MergeContext,
        ev: ExperienceEvent,
        norm: str,
        digest: str,
        embedding: FloatArray | None,
        plan: RequestPlan,
        related_to: str | None = None,
    ) -> str:
        data = ev.memory
        n = ctx.positions.get(ev.event_id)
        if n is None:  # an accepted review's event: after the request's own entries
            n = ctx.position_base + ctx.result.memories_added
        mid = memory_id_for(ctx.cursor, n)
        memory = _construct(
            {
                "memory_id": mid,
                "content": data.content,
                "normalized_hash": digest,
                "memory_type": data.memory_type,
                "tags": list(dict.fromkeys(data.tags)),
                "importance": data.importance,
                "confidence": data.confidence,
                "access_count": 1,
                "source_instances": [ev.source_instance],
                "source_events": [ev.event_id],
                "created_at": ev.timestamp,
                "updated_at": ev.timestamp,
                "version": ctx.cursor,
                "superseded": _NONE_SUPERSEDED,
                "related_to": related_to,
            }
        )
        self.memories[mid] = memory
        self.normalized[mid] = norm
        self.by_hash.setdefault(digest, mid)
        if embedding is not None:
            self.embeddings[mid] = embedding
        if self.similarity is not None:
            self.similarity.add(mid, norm, embedding, data.content)
            if self._stores_parses:
                self.reparsed.add(mid)
        if plan.local is not None:
            plan.local.add(mid, norm, embedding, data.content)
            plan.local_added += 1
        self.dirty[mid] = None
        ctx.result.memories_added += 1
        return mid

    def _merge_into(self, ctx: MergeContext, ev: ExperienceEvent, mid: str) -> None:
        data = ev.memory
        m = self.memories[mid]
        if ev.source_instance in m.source_instances and is_reconciliation(ev):
            # A full state restating a memory this instance already reported:
            # no new report, so no count, source event or timestamp changes.
            return
        new_source = ev.source_instance not in m.source_instances
        # Another instance saying the same thing corroborates it; the same
        # instance repeating itself does not.
        confidence = noisy_or(m.confidence, data.confidence) if new_source else max(
            m.confidence, data.confidence
        )
        self.memories[mid] = m.model_copy(
            update={
                "tags": _union(m.tags, data.tags),
                "importance": max(m.importance, data.importance),
                "confidence": confidence,
                "access_count": m.access_count + 1,
                "source_instances": _union(m.source_instances, [ev.source_instance]),
                "source_events": [*m.source_events, ev.event_id][-MAX_SOURCE_EVENTS:],
                "created_at": min(m.created_at, ev.timestamp),
                "updated_at": max(m.updated_at, ev.timestamp),
                "version": ctx.cursor,
            }
        )
        self.dirty[mid] = None
        ctx.result.memories_merged += 1

    def _contradiction(
        self,
        ctx: MergeContext,
        ev: ExperienceEvent,
        desk: ConflictDesk,
        mid: str,
        norm: str,
        digest: str,
        embedding: FloatArray | None,
        plan: RequestPlan,
    ) -> None:
        data = ev.memory
        m = self.memories[mid]
        if not ctx.force and is_reconciliation(ev) and any(
            s.instance_id == ev.source_instance and normalize(s.content) == norm
            for s in m.superseded
        ):
            # A full state restating what this instance said before it lost
            # the conflict: not a new report (its later timestamp would
            # otherwise bring the old statement back under latest_wins).
            return
        current = desk.side(m.content, m.confidence, m.updated_at, 0, m.source_instances[-1])
        incoming = desk.side(
            data.content, data.confidence, ev.timestamp, ev.lamport, ev.source_instance
        )
        resolution = desk.resolve(ctx, "memory", mid, current, incoming, ev)
        if resolution.action == "apply" and resolution.value == data.content:
            confidence = resolution.confidence if resolution.confidence is not None else (
                data.confidence
            )
            self._supersede(ctx, ev, mid, norm, digest, embedding, confidence, plan)
        elif resolution.action == "keep":
            # The incoming statement lost: the memory records it, so either
            # arrival order leaves the same content and the same record.
            lost = SupersededStatement.model_construct(
                content=data.content, instance_id=ev.source_instance, event_id=ev.event_id,
                timestamp=ev.timestamp,
            )
            update: dict[str, Any] = {
                "superseded": _record(m.superseded, lost), "version": ctx.cursor,
            }
            if resolution.confidence is not None:
                update["confidence"] = resolution.confidence
            self.memories[mid] = m.model_copy(update=update)
            self.dirty[mid] = None

    def _supersede(
        self,
        ctx: MergeContext,
        ev: ExperienceEvent,
        mid: str,
        norm: str,
        digest: str,
        embedding: FloatArray | None,
        confidence: float,
        plan: RequestPlan,
    ) -> None:
        """Replace a stored memory's statement by the incoming one that contradicts it."""
        m = self.memories.get(mid)
        if m is None:
            self._add(ctx, ev, norm, digest, embedding, plan)
            return
        data = ev.memory
        if self.by_hash.get(m.normalized_hash) == mid:
            del self.by_hash[m.normalized_hash]
        self.by_hash.setdefault(digest, mid)
        if embedding is None and self.embedder is not None:
            embedding = self.embedder.embed([data.content])[0]
        self.normalized[mid] = norm
        if embedding is not None:
            self.embeddings[mid] = embedding
        if self.similarity is not None:
            self.similarity.remove(mid)
            self.similarity.add(mid, norm, embedding, data.content)
            if self._stores_parses:
                self.reparsed.add(mid)
        # Stored matches found before this change may be out of date.
        plan.stale = True
        # The replaced statement, as the resolver saw it: its latest report.
        lost = SupersededStatement.model_construct(
            content=m.content, instance_id=m.source_instances[-1],
            event_id=m.source_events[-1] if m.source_events else "", timestamp=m.updated_at,
        )
        self.memories[mid] = m.model_copy(
            update={
                "superseded": _record(m.superseded, lost),
                "content": data.content,
                "normalized_hash": digest,
                "tags": _union(m.tags, data.tags),
                "importance": max(m.importance, data.importance),
                "confidence": min(1.0, max(0.0, confidence)),
                "source_instances": _union(m.source_instances, [ev.source_instance]),
                "source_events": [*m.source_events, ev.event_id][-MAX_SOURCE_EVENTS:],
                "updated_at": max(m.updated_at, ev.timestamp),
                "version": ctx.cursor,
            }
        )
        # A conflict, counted by the desk: never a merge of duplicates.
        self.dirty[mid] = None

    # ------------------------------------------------------------------ reads

    def search(self, q: str | None) -> list[Memory]:
        """Memories whose normalized text contains the normalized query, in insertion order."""
        if not q or not normalize(q):
            return list(self.memories.values())
        needle = normalize(q)
        return [m for mid, m in self.memories.items() if needle in self.normalized[mid]]

    # ------------------------------------------------------------------ persistence

    def make_no_parses(self) -> None:
        """The store keeps no parses (``Store.keeps_parsed`` false): write none with the rows."""
        self._stores_parses = False

    def load(
        self,
        rows: list[StoredRow],
        *,
        consume: bool = False,
        parsed_sink: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        """Restore memories and rebuild the indexes from stored vectors (none recomputed).

        The similarity index is rebuilt from each memory's stored parse when
        the method can use it (the built-in ones, see
        :func:`~experience_sync.hub.merge.similarity.load_parsed`). The rows
        are read :data:`LOAD_CHUNK` at a time, so a large agent never holds
        all its rows, all their new parses and all its memories at once:

        - ``consume``: ``rows`` is emptied as it is read (its rows are freed
          once their memories are built; the caller must not need them);
        - ``parsed_sink``: receives the parses the load had to make again (a
          row without one, or with one of other code or another text), by
          memory id, :data:`SAVE_PARSED_BATCH` at a time; without it none are
          made.
        """
        sim = self.similarity
        add_stored = getattr(sim, "add_stored", None) if self._stores_parses else None
        dump = parsed_sink is not None
        # The Jaccard index is built a chunk at a time. Another method gets all
        # the memories in one call, as before (the embedding index grows its
        # matrix to what one add asks for, not to the next power of two).
        in_parts = add_stored is not None and isinstance(sim, JaccardSimilarity)
        whole: list[tuple[str, str, FloatArray | None, str | None]] = []
        whole_parsed: list[bytes | str | None] = []
        fresh: dict[str, bytes] = {}
        if consume:
            rows.reverse()  # popped from the end: store order
        start = 0
        while rows if consume else start < len(rows):
            if consume:
                chunk = [rows.pop() for _ in range(min(LOAD_CHUNK, len(rows)))]
            else:
                chunk = rows[start : start + LOAD_CHUNK]
                start += LOAD_CHUNK
            batch = self._load_rows(chunk)
            if sim is None:
                continue
            if add_stored is not None and in_parts:
                fresh.update(add_stored(batch, [row.parsed for row in chunk], dump))
                if parsed_sink is not None and len(fresh) >= SAVE_PARSED_BATCH:
                    parsed_sink(fresh)
                    fresh = {}
                continue
            whole += batch
            if add_stored is not None:
                whole_parsed += [row.parsed for row in chunk]
        if sim is not None and whole:
            if add_stored is not None:
                fresh.update(add_stored(whole, whole_parsed, dump))
            else:
                sim.add_many(whole)
        if parsed_sink is not None and fresh:
            ids = list(fresh)
            for at in range(0, len(ids), SAVE_PARSED_BATCH):
                parsed_sink({mid: fresh[mid] for mid in ids[at : at + SAVE_PARSED_BATCH]})

    def _load_rows(
        self, rows: list[StoredRow]
    ) -> list[tuple[str, str, FloatArray | None, str | None]]:
        """Restore the memories of ``rows``; their similarity items, vectors computed if missing."""
        batch: list[tuple[str, str, FloatArray | None, str | None]] = []
        for row in rows:
            m = stored_memory(row.body)
            mid = m.memory_id
            norm = row.normalized
            if norm is None or not _parse_current(row.parsed):
                # Written by a version that read text differently (its parse
                # is stale, or the store keeps none): normalized again, so
                # the memory's words and hash are what a new event's are.
                fresh = normalize(m.content)
                if norm is not None and fresh != norm:
                    digest = content_hash(fresh)
                    if digest != m.normalized_hash:
                        m = m.model_copy(update={"normalized_hash": digest})
                    self.dirty[mid] = None
                norm = fresh
            self.memories[mid] = m
            self.normalized[mid] = norm
            self.by_hash.setdefault(m.normalized_hash, mid)
            vec: FloatArray | None = None
            if row.embedding is not None:
                vec = np.frombuffer(row.embedding, dtype=np.float32).copy()
                self.embeddings[mid] = vec
            batch.append((mid, norm, vec, m.content))
        if self.similarity is not None and self.embedder is not None and batch:
            missing = [i for i, item in enumerate(batch) if item[2] is None]
            if missing:  # stored before embeddings were configured
                vectors = self.embedder.embed([batch[i][3] or "" for i in missing])
                for i, vec_new in zip(missing, vectors, strict=True):
                    mid, norm, _, text = batch[i]
                    self.embeddings[mid] = np.asarray(vec_new, dtype=np.float32)
                    self.dirty[mid] = None
                    batch[i] = (mid, norm, self.embeddings[mid], text)
        return batch

    def take_rows(self) -> list[StoredRow]:
        """Rows of the memories changed since the last call.

        A memory whose text changed carries its new parse (the similarity
        method read the text just now, so it costs no second reading); the
        others carry none, which a store reads as unchanged.
        """
        rows = []
        reparsed = self.reparsed
        for mid in self.dirty:
            m = self.memories[mid]
            vec = self.embeddings.get(mid)
            norm = self.normalized[mid]
            rows.append(
                StoredRow(
                    mid,
                    m.version,
                    m.model_dump_json(),
                    m.normalized_hash,
                    vec.astype(np.float32).tobytes() if vec is not None else None,
                    norm,
                    dump_parsed(norm, m.content) if mid in reparsed else None,
                )
            )
        self.dirty.clear()
        reparsed.clear()
        if self._complete_after is not None and rows:
            top = self._written_top = max(self._written_top, max(r.version for r in rows))
            written = self._written
            for r in rows:
                written.pop(r.key, None)
                written[r.key] = top
            if len(written) > max(4096, len(self.memories) // 4):
                # Most memories changed since: a scan costs as much. Track anew.
                written.clear()
                self._complete_after = top
        return rows

    def track_changes_after(self, cursor: int) -> None:
        """Every memory has a version <= ``cursor``: track what changes after it."""
        self._written.clear()
        self._written_top = cursor
        self._complete_after = cursor

    def changed_after(self, after: int) -> list[Memory] | None:
        """The memories whose version is above ``after`` (in the order the hub last wrote them).

        ``None`` when what changed that far back is not tracked (the caller
        scans every memory instead). Costs what changed, not what is stored.
        """
        if self._complete_after is None or after < self._complete_after:
            return None
        out = []
        memories = self.memories
        for mid, stamp in reversed(self._written.items()):
            if stamp <= after:
                break
            m = memories.get(mid)
            if m is not None and m.version > after:
                out.append(m)
        out.reverse()
        return out
