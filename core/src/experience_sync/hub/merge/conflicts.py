"""Conflicts: contested values handed to the configured resolver, and the review queue.

A conflict is two reports that say different things about the same item (see
``docs/merging.md``). The engine turns each side into a
:class:`~experience_sync.interfaces.ContestedValue` and asks the
:class:`~experience_sync.interfaces.ConflictResolver` registered under
``merge_strategy.conflict_resolution``. A ``queue`` decision becomes an open
:class:`~experience_sync.models.Review` carrying both sides and the whole
incoming event, which :meth:`MergeEngine.decide_review` applies or drops.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from experience_sync.config import MergeStrategyConfig
from experience_sync.interfaces import ConflictResolver, ContestedValue, Resolution
from experience_sync.models import (
    ConflictCounts,
    ExperienceEvent,
    MemoryOutcome,
    MergeOutcome,
    MergeResult,
    OutcomeCounts,
    Review,
    wire_time,
)
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.stores.state import StoredRow

if TYPE_CHECKING:
    from experience_sync.hub.merge.judging import Judgement

ConflictKind = Literal["memory", "skill", "knowledge", "characteristic"]

#: An observability event to emit once the change is committed: (type, instance, data).
Notice = tuple[str, str | None, dict[str, Any]]


def short_hash(*parts: str, size: int = 10) -> str:
    """A stable hex digest of ``parts`` (ids derived from content or event ids)."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def order_key(timestamp: datetime, lamport: int, instance_id: str, event_id: str) -> tuple[
    datetime, int, str, str
]:
    """The total order of reports: event time, Lamport clock, instance id, event id.

    ``latest_wins`` uses the same order, so "latest" never depends on arrival.
    """
    return (timestamp, lamport, instance_id, event_id)


def is_reconciliation(ev: ExperienceEvent) -> bool:
    """Whether ``ev`` was derived by the hub from a check-in's full state.

    Such an event restates what the instance holds (see
    :func:`experience_sync.hub.engine.checkin_events`); what the same
    instance already reported is no new report.
    """
    return ev.event_id.startswith("ci-") and ev.context.trigger == "check_in"


@dataclass
class ConflictTally:
    """Conflicts of one request: ``total``, ``resolved`` and ``queued``."""

    total: int = 0
    resolved: int = 0
    queued: int = 0


@dataclass
class Tally:
    """The counts of one request, kept as plain ints on the hot path.

    :meth:`into` copies them onto the :class:`MergeResult` answered.
    """

    memories_added: int = 0
    memories_merged: int = 0
    skills_added: int = 0
    skills_updated: int = 0
    knowledge_added: int = 0
    knowledge_verified: int = 0
    knowledge_integrated: int = 0
    characteristics_updated: int = 0
    interactions_recorded: int = 0
    conflicts: ConflictTally = field(default_factory=ConflictTally)
    #: New memories per merge outcome, and those that had a near candidate.
    outcomes: dict[str, int] = field(
        default_factory=lambda: {"duplicate": 0, "contradiction": 0, "distinct": 0}
    )
    memory_outcomes: list[MemoryOutcome] = field(default_factory=list)

    def outcome(
        self,
        event_id: str,
        outcome: MergeOutcome,
        memory_id: str | None,
        related_to: str | None = None,
        reason: str | None = None,
        listed: bool = True,
    ) -> None:
        """Count one new memory's outcome (and list it, when it had a near candidate)."""
        self.outcomes[outcome] += 1
        if listed:
            self.memory_outcomes.append(
                MemoryOutcome.model_construct(
                    event_id=event_id, outcome=outcome, memory_id=memory_id,
                    related_to=related_to, reason=reason,
                )
            )

    def into(self, result: MergeResult) -> MergeResult:
        """Copy the counts onto ``result`` and return it."""
        for name in (
            "memories_added", "memories_merged", "skills_added", "skills_updated",
            "knowledge_added", "knowledge_verified", "knowledge_integrated",
            "characteristics_updated", "interactions_recorded",
        ):
            setattr(result, name, getattr(self, name))
        c = self.conflicts
        result.conflicts = ConflictCounts(total=c.total, resolved=c.resolved, queued=c.queued)
        result.outcomes = OutcomeCounts(**self.outcomes)
        result.memory_outcomes = list(self.memory_outcomes)
        return result


@dataclass
class MergeContext:
    """What one request (or one review decision) accumulates while it merges.

    :param cursor: the agent cursor every row changed by this request gets.
    :param result: the counts answered to the sender.
    :param notices: observability events to emit after the commit.
    :param force: applying an accepted review: skip conflict detection.
    :param target: for an accepted memory review, the stored memory to supersede.
    :param judgements: merge judge decisions by event id: those this request's
        judge made (the engine logs them with it), or, on replay, those read
        from the log.
    :param replay: rebuilding from the log: no judge is asked; a logged
        judgement decides its pair, the rules every other.
    :param positions: each event's place in its request's log entries (a
        memory it adds is named after it: see
        :func:`~experience_sync.hub.merge.memory.memory_id_for`).
    :param position_base: how many entries those are (a memory added by an
        event of no position, an accepted review's, is numbered after them).
    """

    cursor: int
    result: Tally = field(default_factory=Tally)
    notices: list[Notice] = field(default_factory=list)
    force: bool = False
    target: str | None = None
    judgements: dict[str, Judgement] = field(default_factory=dict)
    replay: bool = False
    positions: dict[str, int] = field(default_factory=dict)
    position_base: int = 0


class ConflictDesk:
    """Resolves contested values and keeps the agent's reviews."""

    def __init__(self, strategy: MergeStrategyConfig, pm: ExperienceSyncPluginManager) -> None:
        self.resolver: ConflictResolver = pm.registry.create(
            "conflict_resolvers", strategy.conflict_resolution, strategy
        )
        self.trust = dict(strategy.instance_trust)
        self.reviews: dict[str, Review] = {}
        self.dirty: dict[str, None] = {}

    def side(
        self,
        value: Any,
        confidence: float,
        timestamp: datetime,
        lamport: int,
        instance_id: str,
    ) -> ContestedValue:
        """One side of a conflict, weighted by the instance's configured trust (default 1)."""
        return ContestedValue(
            value=value,
            confidence=confidence,
            timestamp=timestamp,
            lamport=lamport,
            instance_id=instance_id,
            trust=self.trust.get(instance_id, 1.0),
        )

    def resolve(
        self,
        ctx: MergeContext,
        kind: ConflictKind,
        key: str,
        current: ContestedValue,
        incoming: ContestedValue,
        event: ExperienceEvent,
    ) -> Resolution:
        """Count the conflict and ask the resolver; a ``queue`` opens a review."""
        ctx.result.conflicts.total += 1
        resolution = self.resolver.resolve(current, incoming)
        if resolution.action == "queue":
            review = Review.model_construct(
                review_id=review_id(event.event_id),
                kind=kind,
                key=key,
                current=_side_dict(current),
                proposed={**_side_dict(incoming), "event": event.model_dump(mode="json")},
                event_id=event.event_id,
                instance_id=event.source_instance,
                status="open",
                created_at=event.timestamp,
                decided_at=None,
                version=ctx.cursor,
            )
            self.reviews[review.review_id] = review
            self.dirty[review.review_id] = None
            ctx.result.conflicts.queued += 1
            ctx.notices.append(
                ("review.queued", event.source_instance,
                 {"review_id": review.review_id, "kind": kind, "key": key})
            )
        else:
            ctx.result.conflicts.resolved += 1
            ctx.notices.append(
                ("conflict.resolved", event.source_instance,
                 {"kind": kind, "key": key, "action": resolution.action,
                  "strategy": self.resolver.name, "event_id": event.event_id})
            )
        return resolution

    def settle(
        self,
        ctx: MergeContext,
        kind: ConflictKind,
        key: str,
        action: Literal["apply", "keep"],
        event: ExperienceEvent,
        strategy: str = "evidence",
    ) -> None:
        """Count a conflict the evidence decided without the resolver (knowledge under dissent)."""
        ctx.result.conflicts.total += 1
        ctx.result.conflicts.resolved += 1
        ctx.notices.append(
            ("conflict.resolved", event.source_instance,
             {"kind": kind, "key": key, "action": action, "strategy": strategy,
              "event_id": event.event_id})
        )

    def decide(self, ctx: MergeContext, review: Review, accept: bool, at: datetime) -> Review:
        """Close an open review (the caller applies its event when accepted)."""
        decided = review.model_copy(
            update={
                "status": "accepted" if accept else "rejected",
                "decided_at": at,
                "version": ctx.cursor,
            }
        )
        self.reviews[review.review_id] = decided
        self.dirty[review.review_id] = None
        ctx.notices.append(
            ("review.decided", review.instance_id,
             {"review_id": review.review_id, "kind": review.kind, "key": review.key,
              "accepted": accept})
        )
        return decided

    # ------------------------------------------------------------------ persistence

    def load(self, rows: list[StoredRow]) -> None:
        """Restore the reviews from stored rows."""
        for row in rows:
            review = Review.model_validate_json(row.body)
            self.reviews[review.review_id] = review

    def take_rows(self) -> list[StoredRow]:
        """Rows of the reviews changed since the last call."""
        rows = [
            StoredRow(rid, self.reviews[rid].version, self.reviews[rid].model_dump_json())
            for rid in self.dirty
        ]
        self.dirty.clear()
        return rows


def review_id(event_id: str) -> str:
    """The review opened by an event: derived from its id, so replay reopens the same one."""
    return "rv-" + short_hash(event_id)


def _side_dict(side: ContestedValue) -> dict[str, Any]:
    return {
        "value": _jsonable(side.value),
        "confidence": side.confidence,
        "timestamp": wire_time(side.timestamp),
        "lamport": side.lamport,
        "instance_id": side.instance_id,
    }


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
