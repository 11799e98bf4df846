"""One agent's merged state in memory, and how merged events change it.

:class:`AgentRuntime` holds what the mergers derived from an agent's log
(memories, skills, knowledge, characteristics, reviews, statistics) plus the
operational instance statuses, and turns what changed into a
:class:`~experience_sync.stores.state.ChangeSet`. It neither locks nor commits:
:class:`~experience_sync.hub.engine.MergeEngine` does both around it, and
:func:`~experience_sync.hub.replay.replay` drives it from a stored log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.merge.conflicts import ConflictDesk, MergeContext
from experience_sync.hub.merge.knowledge import KnowledgeIntegrator
from experience_sync.hub.merge.memory import MemoryMerger, RequestPlan
from experience_sync.hub.merge.skills import SkillAccumulator
from experience_sync.models import (
    AgentState,
    EvolutionStats,
    ExperienceEvent,
    InstanceStatus,
    MergeResult,
    Review,
    utcnow,
)
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.recall.documents import (
    SearchDoc,
    doc_of_knowledge,
    doc_of_memory,
    doc_of_skill,
)
from experience_sync.stores.state import ChangeSet, LogEntry, StoredAgent, StoredRow
from experience_sync.units import UNITS

__all__ = ["AgentRuntime"]



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
        # The cursor of the last forget (its tombstone): a pull from before it
        # gets the whole state, since a forget rewrote what came earlier.
        self.forgotten_at = 0
        # The store's write version of the agent this state was loaded at or
        # last committed (only a store shared by several processes keeps one).
        self.version = 0

    def load(
        self,
        stored: StoredAgent,
        *,
        consume: bool = False,
        parsed_sink: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        """Fill from stored rows (similarity indexes are rebuilt from stored vectors).

        ``consume`` and ``parsed_sink``: see :meth:`MemoryMerger.load` (with
        ``consume``, ``stored`` is left without its memory rows).
        """
        self.cursor = stored.cursor
        self.version = stored.version
        if stored.meta:
            meta = json.loads(stored.meta)
            self.stats = EvolutionStats.model_validate(meta["stats"])
            self.forgotten_at = int(meta.get("forgotten_at", 0))
        rows = stored.rows
        self.memory.load(rows.get("memories", []), consume=consume, parsed_sink=parsed_sink)
        top = max((m.version for m in self.memory.memories.values()), default=0)
        self.memory.track_changes_after(max(stored.cursor, top))
        self.skills.load(rows.get("skills", []))
        self.knowledge.load(rows.get("knowledge", []), rows.get("characteristics", []))
        self.desk.load(rows.get("reviews", []))
        for row in rows.get("instances", []):
            status = InstanceStatus.model_validate_json(row.body)
            self.instances[status.instance_id] = status

    # ------------------------------------------------------------------ merging

    def apply_event(
        self, ctx: MergeContext, ev: ExperienceEvent, plan: RequestPlan | None = None
    ) -> None:
        """Merge one event that is new to the log (``plan``: its request's, if prepared)."""
        kind = ev.event_type
        if kind == "memory":
            self.memory.merge(ctx, ev, self.desk, plan)
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
        plan = self.memory.prepare(events)
        for ev in events:
            self.apply_event(ctx, ev, plan)
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
        if accept:
            ev = ExperienceEvent.model_validate(review.proposed["event"])
            ctx.force = True
            ctx.target = review.key if review.kind == "memory" else None
            try:
                self.apply_event(ctx, ev)
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
        events: Sequence[ExperienceEvent],
        accepted: int,
        last_sequence: int | None = None,
        *,
        protocol: str | None = None,
        transport: str | None = None,
        backlog: int | None = None,
    ) -> None:
        """Record what this request tells about its instance (operational, wall clock).

        ``protocol``, ``transport`` and ``backlog`` are what the transport
        reported: a missing protocol is the one ``kind`` implies, a missing
        transport or backlog keeps what is known.
        """
        now = utcnow()
        prev = self.instances.get(instance_id) or InstanceStatus(instance_id=instance_id)
        seq = max((ev.sequence for ev in events), default=0)
        if last_sequence is not None:
            seq = max(seq, last_sequence)
        lag = prev.lag_seconds
        if events:
            lag = max(0.0, (now - min(ev.timestamp for ev in events)).total_seconds())
        self.instances[instance_id] = prev.model_copy(
            update={
                "last_sync": now,
                "last_sequence": max(prev.last_sequence, seq),
                "lag_seconds": lag,
                "backlog": backlog if backlog is not None else prev.backlog,
                "protocol": protocol or (UNITS[kind].protocol if kind in UNITS else prev.protocol),
                "transport": transport or prev.transport,
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
        documents = self.documents(rows)
        write_stats = bool(log) if stats is None else stats
        meta = None
        if write_stats:
            fields: dict[str, object] = {"stats": self.stats.model_dump(mode="json")}
            if self.forgotten_at:
                fields["forgotten_at"] = self.forgotten_at
            meta = json.dumps(fields)
        return ChangeSet(
            cursor=self.cursor,
            log=log,
            rows={table: r for table, r in rows.items() if r},
            meta=meta,
            units=units or [],
            documents=documents,
        )

    def documents(self, rows: dict[str, list[StoredRow]] | None = None) -> list[SearchDoc]:
        """The search documents of the items in ``rows`` (default: of every item)."""
        if rows is None:
            return [
                *(doc_of_memory(m) for m in self.memory.memories.values()),
                *(doc_of_knowledge(k) for k in self.knowledge.items.values()),
                *(doc_of_skill(s) for s in self.skills.skills.values()),
            ]
        memories, items, skills = self.memory.memories, self.knowledge.items, self.skills.skills
        return [
            *(doc_of_memory(memories[r.key]) for r in rows.get("memories", ())),
            *(doc_of_knowledge(items[r.key]) for r in rows.get("knowledge", ())),
            *(doc_of_skill(skills[r.key]) for r in rows.get("skills", ())),
        ]

    # ------------------------------------------------------------------ reads

    def state(self, since: int | None) -> AgentState:
        """The whole state, or only what changed after ``since``.

        A ``since`` before the last forget gets the whole state with
        ``reset`` set: the forget removed items the caller may hold.
        """
        reset = since is not None and since < self.forgotten_at
        after = -1 if since is None or reset else since
        memories = self.memory.changed_after(after) if after >= 0 else None
        if memories is None:
            memories = [m for m in self.memory.memories.values() if m.version > after]
        return AgentState.model_construct(
            reset=reset,
            agent_id=self.agent_id,
            cursor=self.cursor,
            memories=memories,
            skills=[s for s in self.skills.skills.values() if s.version > after],
            knowledge=[k for k in self.knowledge.items.values() if k.version > after],
            characteristics={
                k: c for k, c in self.knowledge.characteristics.items() if c.version > after
            },
            reviews=[r for r in self.desk.reviews.values() if r.version > after],
            stats=self.stats.model_copy(),
        )
