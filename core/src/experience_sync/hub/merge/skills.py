"""SkillAccumulator: the source agent's skills, accumulated over instances' reports.

A skill is matched by ``skill_id``, else by its normalized name. Each report is
kept; the skill is a fold of its reports in the total order of
:func:`~experience_sync.hub.merge.conflicts.order_key` (event time, Lamport clock,
instance, event id), so the result does not depend on arrival order:

* per instance, the latest report by ``(invocations, timestamp, lamport,
  event id)`` counts (usage reports are cumulative, so re-sending one never
  doubles ``total_invocations``);
* ``total_invocations`` is the sum over instances; ``success_rate`` is
  invocation-weighted (total successes / total invocations);
* ``proficiency`` is the configured :class:`SkillAggregator` over the
  instances' latest proficiencies (``max``, ``average``, ``weighted``);
* a learning-curve point ``(timestamp, proficiency, event)`` is appended
  whenever the aggregated proficiency changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.merge.conflicts import (
    ConflictDesk,
    MergeContext,
    is_reconciliation,
    order_key,
    short_hash,
)
from experience_sync.interfaces import SkillAggregator
from experience_sync.models import (
    ExperienceEvent,
    InstanceSkillReport,
    LearningCurvePoint,
    Skill,
    SkillUsage,
)
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.stores.state import StoredRow
from experience_sync.text import normalize


@dataclass(frozen=True)
class SkillReport:
    """One instance's report about one skill, as received."""

    instance_id: str
    event_id: str
    timestamp: datetime
    lamport: int
    proficiency: float | None
    invocations: int
    successes: int
    contexts: tuple[str, ...]
    last_used: datetime | None
    name: str
    category: str

    @property
    def order(self) -> tuple[datetime, int, str, str]:
        """This report's place in the total order of :func:`order_key`."""
        return order_key(self.timestamp, self.lamport, self.instance_id, self.event_id)

    @classmethod
    def from_event(cls, ev: ExperienceEvent) -> SkillReport:
        """The report a ``skill`` event carries."""
        data = ev.skill
        return cls(
            ev.source_instance,
            ev.event_id,
            ev.timestamp,
            ev.lamport,
            data.proficiency,
            data.usage.invocations,
            data.usage.successes,
            tuple(data.usage.contexts),
            data.usage.last_used,
            data.name,
            data.category,
        )

    def to_json(self) -> list[Any]:
        """The report as a JSON list, as stored (read back by :meth:`from_json`)."""
        # Field by field: dataclasses.astuple deep-copies, and a skill's row
        # carries up to MAX_REPORTS reports on every write.
        return [
            self.instance_id,
            self.event_id,
            self.timestamp.isoformat(),
            self.lamport,
            self.proficiency,
            self.invocations,
            self.successes,
            list(self.contexts),
            self.last_used.isoformat() if self.last_used else None,
            self.name,
            self.category,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> SkillReport:
        """A report from its :meth:`to_json` list."""
        return cls(
            row[0], row[1], datetime.fromisoformat(row[2]), row[3], row[4], row[5], row[6],
            tuple(row[7]), datetime.fromisoformat(row[8]) if row[8] else None, row[9], row[10],
        )


#: Reports kept per skill before the older half is folded into a snapshot.
MAX_REPORTS = 512


def skill_id_for(name: str) -> str:
    """The id of a skill reported without one: derived from its normalized name."""
    return "sk-" + short_hash(normalize(name), size=8)


#: Slack on ``skill_conflict_margin`` for floating-point rounding.
_TOLERANCE = 1e-9


def _inst_key(r: InstanceSkillReport) -> tuple[int, datetime, int, str]:
    return (r.invocations, r.timestamp, r.lamport, r.event_id)


class SkillAccumulator:
    """One agent's skills and the reports they are folded from."""

    def __init__(self, strategy: MergeStrategyConfig, pm: ExperienceSyncPluginManager) -> None:
        self.aggregator: SkillAggregator = pm.registry.create(
            "skill_aggregations", strategy.skill_aggregation, strategy
        )
        self.margin = strategy.skill_conflict_margin
        self.strategy = strategy
        self.skills: dict[str, Skill] = {}
        self.reports: dict[str, list[SkillReport]] = {}
        self.by_name: dict[str, str] = {}
        # Reports folded into a snapshot to bound a skill's history (see _compact).
        self.bases: dict[str, tuple[Skill, tuple[datetime, int, str, str]]] = {}
        self.dirty: dict[str, None] = {}

    def find(self, skill_id: str | None, name: str) -> str | None:
        """The stored skill an event is about: by id, else by normalized name."""
        if skill_id is not None and skill_id in self.skills:
            return skill_id
        return self.by_name.get(normalize(name))

    def merge(self, ctx: MergeContext, ev: ExperienceEvent, desk: ConflictDesk) -> None:
        """Merge one skill event (already known to be new to the log)."""
        data = ev.skill
        canonical = self.strategy.skill_name(data.name)
        if canonical != data.name:
            # One tool under another framework's name: merged as one skill.
            data = data.model_copy(update={"name": canonical})
            ev = ev.model_copy(update={"data": data})
        report = SkillReport.from_event(ev)
        sid = self.find(data.skill_id, data.name)
        if sid is None:
            sid = data.skill_id or skill_id_for(data.name)
            self.reports[sid] = [report]
            self.skills[sid] = self._fold(sid, [report], ctx.cursor)
            self.by_name.setdefault(normalize(data.name), sid)
            self.dirty[sid] = None
            ctx.result.skills_added += 1
            return
        skill = self.skills[sid]
        if not ctx.force and is_reconciliation(ev) and self._restates(skill, sid, report, desk):
            return
        other = None
        if not ctx.force and report.proficiency is not None:
            other = self._disagreement(skill, report)
        if other is not None:
            # The other side is the other instance's latest report: a conflict
            # is between instances, never an instance and its own progress.
            inst, theirs = other
            current = desk.side(
                theirs.proficiency, 1.0, theirs.timestamp, theirs.lamport, inst
            )
            incoming = desk.side(
                report.proficiency, 1.0, ev.timestamp, ev.lamport, ev.source_instance
            )
            # Aggregation is how skill reports combine; the resolver only
            # decides whether the disagreeing report waits for a review.
            if desk.resolve(ctx, "skill", sid, current, incoming, ev).action == "queue":
                return
        reports = self.reports[sid]
        base = self.bases.get(sid)
        if base is not None and report.order < base[1]:
            # Older than the compacted history: fold it into the snapshot.
            # Usage and proficiency stay exact; only the learning curve's
            # shape is approximate for so late a report.
            snapshot = self._step(base[0], report, ctx.cursor)
            self.bases[sid] = (snapshot, base[1])
            self.skills[sid] = self._fold(sid, reports, ctx.cursor, snapshot)
        elif reports and report.order < reports[-1].order:
            reports.append(report)
            reports.sort(key=lambda r: r.order)
            self.skills[sid] = self._fold(sid, reports, ctx.cursor, base[0] if base else None)
        else:
            reports.append(report)
            self.skills[sid] = self._step(skill, report, ctx.cursor)
        if len(reports) > MAX_REPORTS:
            self._compact(sid, ctx.cursor)
        self.dirty[sid] = None
        ctx.result.skills_updated += 1

    def _compact(self, sid: str, version: int) -> None:
        """Fold the older half of a skill's reports into its snapshot.

        Rewriting a skill writes its reports: keeping at most
        :data:`MAX_REPORTS` bounds that cost for skills reported for months.
        """
        reports = self.reports[sid]
        half = len(reports) // 2
        old, keep = reports[:half], reports[half:]
        base = self.bases.get(sid)
        snapshot = self._fold(sid, old, version, base[0] if base else None)
        self.bases[sid] = (snapshot, old[-1].order)
        self.reports[sid] = keep

    def _disagreement(
        self, skill: Skill, report: SkillReport
    ) -> tuple[str, InstanceSkillReport] | None:
        """The other instance whose latest proficiency differs most, beyond the margin.

        Reports of the same instance never disagree (they are its learning
        curve). The tolerance keeps a difference of exactly the margin
        (``0.9 - 0.6``, which is ``0.30000000000000004`` in floating point)
        within it.
        """
        assert report.proficiency is not None
        found: tuple[str, InstanceSkillReport] | None = None
        widest = self.margin + _TOLERANCE
        for inst, other in skill.per_instance.items():
            if inst == report.instance_id or other.proficiency is None:
                continue
            gap = abs(other.proficiency - report.proficiency)
            if gap > widest:
                found, widest = (inst, other), gap
        return found

    @staticmethod
    def _restates(skill: Skill, sid: str, report: SkillReport, desk: ConflictDesk) -> bool:
        """Whether a check-in's state repeats the instance's latest report of this skill.

        Its latest applied report, or one waiting in an open review: either
        way the hub already has it, so it is no new report (and no new review).
        """
        mine = skill.per_instance.get(report.instance_id)
        seen = [] if mine is None else [(mine.proficiency, mine.invocations, mine.successes)]
        for review in desk.reviews.values():
            if (review.status == "open" and review.kind == "skill" and review.key == sid
                    and review.instance_id == report.instance_id):
                usage = review.proposed["event"]["data"].get("usage", {})
                seen.append((review.proposed["event"]["data"].get("proficiency"),
                             usage.get("invocations", 0), usage.get("successes", 0)))
        return (report.proficiency, report.invocations, report.successes) in seen

    # ------------------------------------------------------------------ the fold

    def _fold(
        self, sid: str, reports: list[SkillReport], version: int, start: Skill | None = None
    ) -> Skill:
        if start is not None:
            skill = start
            for report in reports:
                skill = self._step(skill, report, version)
            return skill.model_copy(update={"version": version})
        first = reports[0]
        skill = Skill.model_construct(
            skill_id=sid,
            name=first.name,
            category=first.category,
            proficiency=0.0,
            acquired=first.timestamp,
            source_instances=[],
            learning_curve=[],
            usage=SkillUsage.model_construct(
                total_invocations=0, success_rate=0.0, contexts=[], last_used=None
            ),
            per_instance={},
            version=version,
        )
        for report in reports:
            skill = self._step(skill, report, version)
        return skill

    def _step(self, skill: Skill, r: SkillReport, version: int) -> Skill:
        """Apply the next report in order (never mutates ``skill``)."""
        per_instance = skill.per_instance
        prev = per_instance.get(r.instance_id)
        candidate = InstanceSkillReport.model_construct(
            proficiency=r.proficiency if r.proficiency is not None else (
                prev.proficiency if prev else None
            ),
            invocations=r.invocations,
            successes=r.successes,
            timestamp=r.timestamp,
            lamport=r.lamport,
            event_id=r.event_id,
        )
        if prev is None or _inst_key(candidate) > _inst_key(prev):
            per_instance = {**per_instance, r.instance_id: candidate}
            per_instance = dict(sorted(per_instance.items()))
        latest = [per_instance[i] for i in sorted(per_instance)]
        proficiency = self.aggregator.aggregate(
            [(x.proficiency, x.invocations) for x in latest if x.proficiency is not None]
        )
        proficiency = min(1.0, max(0.0, float(proficiency)))
        curve = skill.learning_curve
        if not curve or curve[-1].proficiency != proficiency:
            curve = [
                *curve,
                LearningCurvePoint.model_construct(
                    timestamp=r.timestamp, proficiency=proficiency, event=r.event_id
                ),
            ]
        total = sum(x.invocations for x in latest)
        successes = sum(x.successes for x in latest)
        usage = skill.usage
        contexts = usage.contexts
        new_contexts = [c for c in r.contexts if c not in contexts]
        if new_contexts:
            contexts = [*contexts, *dict.fromkeys(new_contexts)]
        used = r.last_used or r.timestamp
        last_used = used if usage.last_used is None else max(usage.last_used, used)
        return skill.model_copy(
            update={
                "category": r.category,
                "proficiency": proficiency,
                "acquired": min(skill.acquired, r.timestamp),
                "source_instances": sorted(per_instance),
                "learning_curve": curve,
                "usage": SkillUsage.model_construct(
                    total_invocations=total,
                    success_rate=successes / total if total else 0.0,
                    contexts=contexts,
                    last_used=last_used,
                ),
                "per_instance": per_instance,
                "version": version,
            }
        )

    # ------------------------------------------------------------------ persistence

    def load(self, rows: list[StoredRow]) -> None:
        """Restore skills and their reports from stored rows."""
        for row in rows:
            body = json.loads(row.body)
            skill = Skill.model_validate(body["skill"])
            self.skills[skill.skill_id] = skill
            self.reports[skill.skill_id] = [SkillReport.from_json(r) for r in body["reports"]]
            if body.get("base") is not None:
                ts, lamport, inst, eid = body["base_order"]
                self.bases[skill.skill_id] = (
                    Skill.model_validate(body["base"]),
                    (datetime.fromisoformat(ts), lamport, inst, eid),
                )
            self.by_name.setdefault(normalize(skill.name), skill.skill_id)

    def take_rows(self) -> list[StoredRow]:
        """Rows of the skills changed since the last call."""
        rows = []
        for sid in self.dirty:
            skill = self.skills[sid]
            base = self.bases.get(sid)
            body = {
                "skill": skill.model_dump(mode="json"),
                "reports": [r.to_json() for r in self.reports[sid]],
                "base": base[0].model_dump(mode="json") if base else None,
                "base_order": [base[1][0].isoformat(), *base[1][1:]] if base else None,
            }
            rows.append(StoredRow(sid, skill.version, json.dumps(body)))
        self.dirty.clear()
        return rows


def stored_skill(body: str) -> Skill:
    """The skill of a stored skill row (what :meth:`SkillAccumulator.load` restores)."""
    return Skill.model_validate(json.loads(body)["skill"])
