"""The hub's merge engine: idempotent ingestion into a durable store, reads, and replay.

Each agent's state is loaded from the :class:`~experience_sync.interfaces.Store`
once and kept in memory; an ingestion merges under the agent's lock, then
commits the log rows and only the changed state rows in one transaction, and
answers only after that commit. Every commit that appends to the log gets the
next value of the agent's *cursor*, and every row it changes carries that
cursor as its ``version``, so ``state(since=cursor)`` returns just the changes.

Idempotency: an event id already in the agent's log is listed in
``duplicate_event_ids`` and has no effect; a batch or check-in id already
applied returns the stored result with ``duplicate = true``.

Everything the merge derives comes from the logged events (their timestamps,
never the wall clock), so :func:`replay` rebuilds exactly the live state.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.errors import PluginError
from experience_sync.hub.conflicts import ConflictDesk, MergeContext, Notice, short_hash
from experience_sync.hub.knowledge_integrator import KnowledgeIntegrator
from experience_sync.hub.memory_merger import MemoryMerger
from experience_sync.hub.skill_accumulator import SkillAccumulator
from experience_sync.hub.state import ChangeSet, LogEntry, StoredAgent, StoredRow
from experience_sync.interfaces import FloatArray, Store
from experience_sync.models import (
    AgentState,
    CharacteristicData,
    CheckIn,
    EventContext,
    EventsRequest,
    EvolutionStats,
    ExperienceBatch,
    ExperienceEvent,
    InstanceStatus,
    KnowledgeItem,
    Memory,
    MergeResult,
    Review,
    Skill,
    utcnow,
)
from experience_sync.plugins import ExperienceSyncPluginManager, get_plugin_manager

__all__ = ["IngestMeta", "MergeEngine", "open_store", "replay"]

_DEFAULT_PROTOCOL = {"events": "streaming", "batch": "lumped", "checkin": "check_in"}
_SYNC_EVENT = {"events": "sync.event", "batch": "sync.batch", "checkin": "sync.check_in"}
# Replay commits every this many log entries (at a request boundary).
_REPLAY_COMMIT_EVERY = 5000


@dataclass
class IngestMeta:
    """What the transport tells about the sender.

    :param protocol: ``streaming``, ``lumped`` or ``check_in``.
    :param transport: ``https``, ``websocket`` or ``mcp``.
    :param backlog: the instance's outbox size (``X-Experience-Sync-Backlog``).
    """

    protocol: str | None = None
    transport: str | None = None
    backlog: int | None = None


def open_store(url: str, pm: ExperienceSyncPluginManager | None = None) -> Store:
    """Open a store through the plugin registered for the URL's scheme (``sqlite:///hub.db``)."""
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if not scheme:
        raise ValueError(f"{url!r} is not a store URL (e.g. sqlite:///hub.db)")
    store: Store = (pm or get_plugin_manager()).registry.create("stores", scheme, url)
    return store


class AgentRuntime:
    """One agent's merged state in memory, and the mergers that change it."""

    def __init__(
        self, agent_id: str, strategy: MergeStrategyConfig, pm: ExperienceSyncPluginManager
    ) -> None:
        self.agent_id = agent_id
        self.memory = MemoryMerger(strategy, pm)
        self.skills = SkillAccumulator(strategy, pm)
        self.knowledge = KnowledgeIntegrator(strategy)
        self.desk = ConflictDesk(strategy, pm)
        self.instances: dict[str, InstanceStatus] = {}
        self.instances_dirty: dict[str, None] = {}
        self.stats = EvolutionStats()
        self.cursor = 0

    def load(self, stored: StoredAgent) -> None:
        """Fill from stored rows (similarity indexes are rebuilt from stored vectors)."""
        self.cursor = stored.cursor
        if stored.meta:
            self.stats = EvolutionStats.model_validate(json.loads(stored.meta)["stats"])
        rows = stored.rows
        self.memory.load(rows.get("memories", []))
        self.skills.load(rows.get("skills", []))
        self.knowledge.load(rows.get("knowledge", []), rows.get("characteristics", []))
        self.desk.load(rows.get("reviews", []))
        for row in rows.get("instances", []):
            status = InstanceStatus.model_validate_json(row.body)
            self.instances[status.instance_id] = status

    # ------------------------------------------------------------------ merging

    def apply_event(
        self, ctx: MergeContext, ev: ExperienceEvent, embeddings: dict[str, FloatArray]
    ) -> None:
        """Merge one event that is new to the log."""
        kind = ev.event_type
        if kind == "memory":
            self.memory.merge(ctx, ev, self.desk, embeddings.get(ev.event_id))
        elif kind == "skill":
            self.skills.merge(ctx, ev, self.desk)
        elif kind == "knowledge":
            self.knowledge.merge(ctx, ev, self.desk)
        elif kind == "characteristic":
            self.knowledge.merge_characteristic(ctx, ev, self.desk)
        elif kind == "interaction":
            ctx.result.interactions_recorded += 1
            self.stats.interactions += 1
        else:  # pragma: no cover - the model admits no other type
            raise ValueError(f"unknown event type {kind!r}")

    def apply_events(self, ctx: MergeContext, events: Sequence[ExperienceEvent]) -> None:
        """Merge a request's new events, in order (embeddings computed in one call)."""
        if not events:
            return
        embeddings = self.memory.prepare(events)
        for ev in events:
            self.apply_event(ctx, ev, embeddings)
        stats = self.stats
        stats.total_syncs += 1
        stats.total_events += len(events)
        latest = max(ev.timestamp for ev in events)
        last = stats.last_evolution
        stats.last_evolution = latest if last is None else max(last, latest)

    def apply_decision(
        self, ctx: MergeContext, review_id: str, accept: bool, at: datetime
    ) -> Review | None:
        """Close an open review; when accepted, apply its event without conflict checks."""
        review = self.desk.reviews.get(review_id)
        if review is None or review.status != "open":
            return review
        self.memory.prepare([])  # forget the last request's batch matches
        if accept:
            ev = ExperienceEvent.model_validate(review.proposed["event"])
            ctx.force = True
            ctx.target = review.key if review.kind == "memory" else None
            try:
                self.apply_event(ctx, ev, {})
            finally:
                ctx.force = False
                ctx.target = None
            last = self.stats.last_evolution
            self.stats.last_evolution = ev.timestamp if last is None else max(last, ev.timestamp)
        return self.desk.decide(ctx, review, accept, at)

    def finish(self) -> None:
        """Refresh the counts in the evolution statistics."""
        self.stats.memories = len(self.memory.memories)
        self.stats.skills_learned = len(self.skills.skills)
        self.stats.knowledge_acquired = self.knowledge.integrated

    def touch_instance(
        self,
        instance_id: str,
        kind: str,
        meta: IngestMeta | None,
        events: Sequence[ExperienceEvent],
        accepted: int,
        last_sequence: int | None = None,
    ) -> None:
        """Record what this request tells about its instance (operational, wall clock)."""
        now = utcnow()
        prev = self.instances.get(instance_id) or InstanceStatus(instance_id=instance_id)
        seq = max((ev.sequence for ev in events), default=0)
        if last_sequence is not None:
            seq = max(seq, last_sequence)
        lag = prev.lag_seconds
        if events:
            lag = max(0.0, (now - min(ev.timestamp for ev in events)).total_seconds())
        meta = meta or IngestMeta()
        self.instances[instance_id] = prev.model_copy(
            update={
                "last_sync": now,
                "last_sequence": max(prev.last_sequence, seq),
                "lag_seconds": lag,
                "backlog": meta.backlog if meta.backlog is not None else prev.backlog,
                "protocol": meta.protocol or _DEFAULT_PROTOCOL.get(kind, prev.protocol),
                "transport": meta.transport or prev.transport,
                "total_events": prev.total_events + accepted,
            }
        )
        self.instances_dirty[instance_id] = None

    def changeset(
        self,
        log: list[LogEntry],
        units: list[tuple[str, MergeResult]] | None = None,
        stats: bool | None = None,
    ) -> ChangeSet:
        """Everything changed since the last changeset, ready to commit.

        The statistics are written when ``stats`` is true (default: when the
        log grows, the only time they change).
        """
        knowledge, characteristics = self.knowledge.take_rows()
        rows = {
            "memories": self.memory.take_rows(),
            "skills": self.skills.take_rows(),
            "knowledge": knowledge,
            "characteristics": characteristics,
            "reviews": self.desk.take_rows(),
            "instances": [
                StoredRow(i, 0, self.instances[i].model_dump_json()) for i in self.instances_dirty
            ],
        }
        self.instances_dirty.clear()
        write_stats = bool(log) if stats is None else stats
        meta = json.dumps({"stats": self.stats.model_dump(mode="json")}) if write_stats else None
        return ChangeSet(
            cursor=self.cursor,
            log=log,
            rows={table: r for table, r in rows.items() if r},
            meta=meta,
            units=units or [],
        )

    # ------------------------------------------------------------------ reads

    def state(self, since: int | None) -> AgentState:
        """The whole state, or only what changed after ``since``."""
        after = -1 if since is None else since
        return AgentState.model_construct(
            agent_id=self.agent_id,
            cursor=self.cursor,
            memories=[m for m in self.memory.memories.values() if m.version > after],
            skills=[s for s in self.skills.skills.values() if s.version > after],
            knowledge=[k for k in self.knowledge.items.values() if k.version > after],
            characteristics={
                k: c for k, c in self.knowledge.characteristics.items() if c.version > after
            },
            reviews=[r for r in self.desk.reviews.values() if r.version > after],
            stats=self.stats.model_copy(),
        )


def checkin_events(agent_id: str, checkin: CheckIn) -> list[ExperienceEvent]:
    """Events derived from a check-in's full state, with ids derived from their content.

    Re-sending the same state yields the same ids, so it changes nothing.
    """
    state = checkin.state
    if state is None:
        return []
    inst = checkin.instance_id
    out: list[ExperienceEvent] = []

    def add(kind: str, data: Any) -> None:
        payload = data.model_dump(mode="json", exclude={"embedding"})
        digest = short_hash(agent_id, inst, kind, json.dumps(payload, sort_keys=True), size=12)
        out.append(
            ExperienceEvent(
                event_id=f"ci-{digest}",
                timestamp=checkin.timestamp,
                source_instance=inst,
                agent_id=agent_id,
                event_type=kind,
                data=data,
                context=EventContext(trigger="check_in"),
            )
        )

    for memory in state.memories:
        add("memory", memory)
    for skill in state.skills:
        add("skill", skill)
    for item in state.knowledge:
        add("knowledge", item)
    for key, value in state.characteristics.items():
        add("characteristic", CharacteristicData(key=key, value=value))
    return out


class MergeEngine:
    """Merges what instances send into each source agent's state, durably.

    Thread-safe: one lock per agent. Each ingestion returns only after the
    store committed it.
    """

    def __init__(
        self,
        store: Store,
        strategy: MergeStrategyConfig | None = None,
        pm: ExperienceSyncPluginManager | None = None,
        *,
        emit: bool = True,
    ) -> None:
        self.store = store
        self.strategy = strategy or MergeStrategyConfig()
        self.pm = pm or get_plugin_manager()
        self.emit = emit
        registry = self.pm.registry
        # Fail now on a misnamed plugin rather than on the first request.
        registry.get("conflict_resolvers", self.strategy.conflict_resolution)
        registry.get("skill_aggregations", self.strategy.skill_aggregation)
        if self.strategy.memory_deduplication:
            registry.get("similarity_methods", self.strategy.similarity_method)
        self._check_plugins()
        self._runtimes: dict[str, AgentRuntime] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _check_plugins(self) -> None:
        # Build the merge plugins once (and embed one string) so that an
        # embedder or similarity method that cannot work stops the hub at
        # start, instead of answering every memory with a 500 later.
        try:
            probe = AgentRuntime("(startup check)", self.strategy, self.pm)
            if probe.memory.embedder is not None:
                probe.memory.embedder.embed(["startup check"])
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"the merge strategy's plugins cannot start: {type(exc).__name__}: {exc}"
            ) from exc

    # ------------------------------------------------------------------ plumbing

    def _lock(self, agent_id: str) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(agent_id)
            if lock is None:
                lock = self._locks[agent_id] = threading.RLock()
            return lock

    def _runtime(self, agent_id: str) -> AgentRuntime:
        # Called with the agent's lock held.
        rt = self._runtimes.get(agent_id)
        if rt is None:
            rt = AgentRuntime(agent_id, self.strategy, self.pm)
            rt.load(self.store.load_agent(agent_id))
            self._runtimes[agent_id] = rt
        return rt

    def _commit(self, agent_id: str, changes: ChangeSet) -> None:
        try:
            self.store.commit(agent_id, changes)
        except BaseException:
            # The in-memory state ran ahead of the store: drop it, reload next time.
            self._runtimes.pop(agent_id, None)
            raise

    def _notify(self, agent_id: str, notices: Iterable[Notice]) -> None:
        if not self.emit:
            return
        for type_, instance_id, data in notices:
            self.pm.emit(type_, agent_id=agent_id, instance_id=instance_id, data=data)

    # ------------------------------------------------------------------ ingestion

    def ingest_events(
        self, agent_id: str, request: EventsRequest, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a streaming request; returns after the commit."""
        return self._ingest(agent_id, "events", request.instance_id, None, request.events, meta)

    def ingest_batch(
        self, agent_id: str, batch: ExperienceBatch, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a lumped batch (once per ``batch_id``); returns after the commit."""
        return self._ingest(agent_id, "batch", batch.instance_id, batch.batch_id, batch.events, meta)

    def ingest_checkin(
        self, agent_id: str, checkin: CheckIn, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a check-in: its events, then its full state as derived events."""
        events = [*checkin.events, *checkin_events(agent_id, checkin)]
        last_sequence = checkin.summary.last_sequence if checkin.summary else None
        return self._ingest(
            agent_id, "checkin", checkin.instance_id, checkin.checkin_id, events, meta,
            last_sequence,
        )

    def _ingest(
        self,
        agent_id: str,
        kind: str,
        instance_id: str,
        unit_id: str | None,
        events: Sequence[ExperienceEvent],
        meta: IngestMeta | None,
        last_sequence: int | None = None,
    ) -> MergeResult:
        with self._lock(agent_id):
            rt = self._runtime(agent_id)
            prior = self.store.applied_unit(agent_id, unit_id) if unit_id is not None else None
            if prior is not None:
                result = prior.model_copy(update={"duplicate": True})
                notices: list[Notice] = [
                    (_SYNC_EVENT[kind], instance_id,
                     {"unit_id": unit_id, "events": len(events), "duplicate": True})
                ]
            else:
                try:
                    result, notices = self._merge_request(
                        rt, kind, instance_id, unit_id, events, meta, last_sequence
                    )
                except BaseException:
                    # A plugin or the store failed mid-merge: the in-memory
                    # state may be half changed, so reload it from the store.
                    self._runtimes.pop(agent_id, None)
                    raise
        # Observers run after the commit and outside the agent's lock.
        self._notify(agent_id, notices)
        return result

    def _merge_request(
        self,
        rt: AgentRuntime,
        kind: str,
        instance_id: str,
        unit_id: str | None,
        events: Sequence[ExperienceEvent],
        meta: IngestMeta | None,
        last_sequence: int | None,
    ) -> tuple[MergeResult, list[Notice]]:
        agent_id = rt.agent_id
        seen = self.store.seen_events(agent_id, [ev.event_id for ev in events])
        ctx = MergeContext(cursor=rt.cursor + 1)
        result = MergeResult(agent_id=agent_id, unit_id=unit_id, events_received=len(events))
        fresh: list[ExperienceEvent] = []
        for ev in events:
            if ev.event_id in seen:
                result.duplicate_event_ids.append(ev.event_id)
                continue
            seen.add(ev.event_id)
            fresh.append(ev)
            result.accepted_event_ids.append(ev.event_id)
        log = [
            LogEntry(ev.event_id, "event", ev.model_dump_json(), unit_id, instance_id, ctx.cursor)
            for ev in fresh
        ]
        rt.apply_events(ctx, fresh)
        if fresh:
            rt.cursor = ctx.cursor
            rt.finish()
        rt.touch_instance(instance_id, kind, meta, events, len(fresh), last_sequence)
        ctx.result.into(result)
        result.cursor = rt.cursor
        # The store serializes the result inside commit: no copy needed.
        units = [(unit_id, result)] if unit_id is not None else None
        self._commit(agent_id, rt.changeset(log, units))
        return result, self._summary(kind, instance_id, result, ctx.notices)

    @staticmethod
    def _summary(
        kind: str, instance_id: str, result: MergeResult, notices: list[Notice]
    ) -> list[Notice]:
        out: list[Notice] = [
            (
                _SYNC_EVENT[kind],
                instance_id,
                {
                    "unit_id": result.unit_id,
                    "events": result.events_received,
                    "accepted": len(result.accepted_event_ids),
                    "duplicates": len(result.duplicate_event_ids),
                    "cursor": result.cursor,
                },
            )
        ]
        if result.memories_added or result.memories_merged:
            out.append(("merge.memories", instance_id,
                        {"added": result.memories_added, "merged": result.memories_merged}))
        if result.skills_added or result.skills_updated:
            out.append(("merge.skills", instance_id,
                        {"added": result.skills_added, "updated": result.skills_updated}))
        if result.knowledge_added or result.knowledge_verified or result.knowledge_integrated:
            out.append(("merge.knowledge", instance_id,
                        {"added": result.knowledge_added, "verified": result.knowledge_verified,
                         "integrated": result.knowledge_integrated}))
        return out + notices

    # ------------------------------------------------------------------ reviews

    def decide_review(self, agent_id: str, review_id: str, accept: bool) -> Review:
        """Accept (apply its event) or reject (drop it) an open review.

        Raises :class:`KeyError` for an unknown review; a decided review is
        returned unchanged. The decision is logged, so replay repeats it.
        """
        with self._lock(agent_id):
            rt = self._runtime(agent_id)
            review = rt.desk.reviews.get(review_id)
            if review is None:
                raise KeyError(review_id)
            if review.status != "open":
                return review
            ctx = MergeContext(cursor=rt.cursor + 1)
            at = utcnow()
            body = json.dumps({"review_id": review_id, "accept": accept, "timestamp": at.isoformat()})
            entry = LogEntry(f"review:{review_id}", "decision", body, None, "hub", ctx.cursor)
            try:
                decided = rt.apply_decision(ctx, review_id, accept, at)
                assert decided is not None
                rt.cursor = ctx.cursor
                rt.finish()
                self._commit(agent_id, rt.changeset([entry]))
            except BaseException:
                self._runtimes.pop(agent_id, None)
                raise
        self._notify(agent_id, ctx.notices)
        return decided

    # ------------------------------------------------------------------ reads

    def state(self, agent_id: str, since: int | None = None) -> AgentState:
        """The agent's merged state, or the part changed after cursor ``since``."""
        with self._lock(agent_id):
            return self._runtime(agent_id).state(since)

    def memories(
        self, agent_id: str, q: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[Memory], int]:
        """A page of memories (matching normalized text ``q``) and the total count."""
        with self._lock(agent_id):
            found = self._runtime(agent_id).memory.search(q)
        offset = max(0, offset)
        return found[offset : offset + max(0, limit)], len(found)

    def skills(self, agent_id: str) -> list[Skill]:
        """Every skill, with learning curves."""
        with self._lock(agent_id):
            return list(self._runtime(agent_id).skills.skills.values())

    def knowledge(self, agent_id: str, status: str | None = None) -> list[KnowledgeItem]:
        """Knowledge items, all or those with ``status`` (``pending``/``integrated``)."""
        with self._lock(agent_id):
            items = list(self._runtime(agent_id).knowledge.items.values())
        return [k for k in items if status is None or k.status == status]

    def instances(self, agent_id: str) -> list[InstanceStatus]:
        """What the hub knows about each instance of the agent."""
        with self._lock(agent_id):
            return list(self._runtime(agent_id).instances.values())

    def reviews(self, agent_id: str, status: str | None = "open") -> list[Review]:
        """Reviews with ``status`` (``None``: all)."""
        with self._lock(agent_id):
            items = list(self._runtime(agent_id).desk.reviews.values())
        return [r for r in items if status is None or r.status == status]

    def agents(self) -> list[str]:
        """Every agent with data in the store or merged since start."""
        # list() snapshots the dict in one step: other threads add and drop agents.
        loaded = [a for a, rt in list(self._runtimes.items()) if rt.cursor > 0]
        return sorted(set(self.store.agents()) | set(loaded))

    def preload(self, agent_ids: Iterable[str] | None = None) -> list[str]:
        """Load agents into memory now (default: every agent in the store).

        An agent is otherwise loaded on its first request, which then waits
        for its memories to be read and indexed; a hub calls this at start-up.
        """
        loaded = []
        for agent_id in list(agent_ids) if agent_ids is not None else self.store.agents():
            with self._lock(agent_id):
                self._runtime(agent_id)
            loaded.append(agent_id)
        return loaded

    def close(self) -> None:
        """Forget the in-memory state and close the store."""
        with self._guard:
            self._runtimes.clear()
        self.store.close()

    # ------------------------------------------------------------------ replay

    def _replay(self, agent_id: str, source: Store, copy: bool) -> None:
        """Rebuild the agent from ``source``'s log; ``copy``: into this engine's (new) store.

        A copy also takes what the log does not hold: the applied unit ids
        with their results (so a re-sent batch is still a duplicate) and the
        instance statuses.
        """
        with self._lock(agent_id):
            rt = self._runtime(agent_id)
            if copy:
                # Read before the rebuild grows, and dropped at once: only the
                # instance rows of the source's state are wanted.
                for row in source.load_agent(agent_id).rows.get("instances", []):
                    status = InstanceStatus.model_validate_json(row.body)
                    rt.instances[status.instance_id] = status
                    rt.instances_dirty[status.instance_id] = None
            group: list[LogEntry] = []
            pending: list[LogEntry] = []

            def flush() -> None:
                if not group:
                    return
                ctx = MergeContext(cursor=group[0].request)
                events = [e.event for e in group if e.kind == "event"]
                if events:
                    rt.apply_events(ctx, events)
                for e in group:
                    if e.kind == "decision":
                        body = json.loads(e.body)
                        rt.apply_decision(
                            ctx, body["review_id"], bool(body["accept"]),
                            datetime.fromisoformat(body["timestamp"]),
                        )
                rt.cursor = max(rt.cursor, ctx.cursor)
                rt.finish()
                group.clear()

            for entry in source.iter_log(agent_id):
                if group and entry.request != group[0].request:
                    flush()
                    if len(pending) >= _REPLAY_COMMIT_EVERY:
                        self._commit(agent_id, rt.changeset(pending if copy else [], None, True))
                        pending = []
                group.append(entry)
                pending.append(entry)
            flush()
            self._commit(agent_id, rt.changeset(pending if copy else [], None, True))
            if copy:
                units: list[tuple[str, MergeResult]] = []
                for unit in source.iter_units(agent_id):
                    units.append(unit)
                    if len(units) >= _REPLAY_COMMIT_EVERY:
                        self._commit(agent_id, ChangeSet(cursor=rt.cursor, units=units))
                        units = []
                if units:
                    self._commit(agent_id, ChangeSet(cursor=rt.cursor, units=units))


def replay(
    source: Store,
    agent_id: str,
    strategy: MergeStrategyConfig,
    target: Store | None = None,
    pm: ExperienceSyncPluginManager | None = None,
) -> AgentState:
    """Rebuild an agent's state from ``source``'s log, deterministically.

    With ``target`` ``None`` (or ``source``) the state is rebuilt in place
    (the log, applied units, tokens and instance statuses stay); otherwise
    the agent's log, applied units and instance statuses are copied into
    ``target``, which must not hold the agent yet (tokens are not copied).
    Review decisions in the log are applied again; those naming a review the
    new strategy does not open are skipped. Run it against a stopped hub.
    """
    in_place = target is None or target is source
    dest = source if in_place else target
    assert dest is not None
    if in_place:
        source.reset_state(agent_id)
    elif agent_id in dest.agents():
        raise ValueError(f"the target store already holds agent {agent_id!r}")
    engine = MergeEngine(dest, strategy, pm, emit=False)
    engine._replay(agent_id, source, copy=not in_place)
    return engine.state(agent_id)
