"""KnowledgeIntegrator: knowledge verified across instances, and characteristics.

Knowledge items are keyed by ``knowledge_id``, else normalized ``subject``,
else normalized content. A report finds its item by id, else by subject (an
item with a different id of its own is another item); the id or subject it
brings is then recorded on the item, so either finds it afterwards. Each instance's *latest* report (in the total order
of :func:`~experience_sync.hub.merge.conflicts.order_key`) is its verification; a
repeat from one instance updates its confidence, never adds a verification.

The combined confidence is the noisy-or of the distinct instances' latest
confidences, ``1 - prod(1 - c_i)``, always within 0..1. An item is
*integrated* once, folding its reports in order, the combined confidence
reaches ``knowledge_verification_threshold`` with at least
:data:`MIN_VERIFICATIONS` distinct instances; it then stays integrated. The
fold makes status and confidence independent of arrival order.

Under dissent (a report whose content differs from the item's), the evidence
decides: each instance's latest report votes for one content, and the
content with the most verifying instances is the item's; the others are kept
as :class:`~experience_sync.models.KnowledgeAlternative` with their
verifications. Only a tie goes to the conflict resolver (``docs/merging.md``,
"Knowledge under dissent").

Characteristics (key -> value) live here too: the same value again is a
corroboration (the latest report's confidence counts), a different value is a
conflict for the resolver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
from experience_sync.interfaces import ContestedValue
from experience_sync.models import (
    Characteristic,
    ExperienceEvent,
    KnowledgeAlternative,
    KnowledgeItem,
    Verification,
)
from experience_sync.stores.state import StoredRow
from experience_sync.text import content_hash, normalize

#: Reports kept per knowledge item before repeats are compacted to each
#: instance's latest.
MAX_REPORTS = 256

#: Distinct instances needed before any item integrates: one instance alone,
#: however confident, never integrates knowledge.
MIN_VERIFICATIONS = 2


def combined_confidence(confidences: list[float]) -> float:
    """Noisy-or of independent confidences: ``1 - prod(1 - c)``, clamped to 0..1."""
    miss = 1.0
    for c in confidences:
        miss *= 1.0 - min(1.0, max(0.0, c))
    return min(1.0, max(0.0, 1.0 - miss))


@dataclass(frozen=True)
class KnowledgeReport:
    """One instance's report about one knowledge item."""

    instance_id: str
    event_id: str
    timestamp: datetime
    lamport: int
    confidence: float

    @property
    def order(self) -> tuple[datetime, int, str, str]:
        """This report's place in the total order of :func:`order_key`."""
        return order_key(self.timestamp, self.lamport, self.instance_id, self.event_id)

    def to_json(self) -> list[Any]:
        """The report as a JSON list, as stored (read back by :meth:`from_json`)."""
        return [self.instance_id, self.event_id, self.timestamp.isoformat(), self.lamport,
                self.confidence]

    @classmethod
    def from_json(cls, row: list[Any]) -> KnowledgeReport:
        """A report from its :meth:`to_json` list."""
        return cls(row[0], row[1], datetime.fromisoformat(row[2]), row[3], row[4])


@dataclass
class _Value:
    """One content reported for an item, with the reports of the instances saying it."""

    content: str
    reports: list[KnowledgeReport] = field(default_factory=list)
    # The integration time reached before a compaction (the standing value's).
    floor: datetime | None = None

    @property
    def support(self) -> int:
        """Distinct instances whose latest report says this content."""
        return len({r.instance_id for r in self.reports})

    def latest(self) -> dict[str, KnowledgeReport]:
        out: dict[str, KnowledgeReport] = {}
        for r in self.reports:
            out[r.instance_id] = r
        return out

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content, "reports": [r.to_json() for r in self.reports],
                "floor": self.floor.isoformat() if self.floor else None}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> _Value:
        floor = body.get("floor")
        return cls(body["content"], [KnowledgeReport.from_json(r) for r in body["reports"]],
                   datetime.fromisoformat(floor) if floor else None)


def knowledge_key(knowledge_id: str | None, subject: str | None, content: str) -> str:
    """The identity of a knowledge item: its id, else subject, else content."""
    if knowledge_id:
        return "id:" + knowledge_id
    if subject and normalize(subject):
        return "subject:" + normalize(subject)
    return "content:" + content_hash(normalize(content))


class KnowledgeIntegrator:
    """One agent's knowledge items (with their reports) and characteristics."""

    def __init__(self, strategy: MergeStrategyConfig) -> None:
        self.threshold = strategy.knowledge_verification_threshold
        self.items: dict[str, KnowledgeItem] = {}
        self.reports: dict[str, list[KnowledgeReport]] = {}
        # When an item's history was compacted: the integration time it had
        # reached, which the fold of the shorter history must not lose.
        self.floors: dict[str, datetime] = {}
        # Dissenting contents per item (by fingerprint), and the content a
        # reviewer accepted, which breaks a tie in its favour.
        self.alternatives: dict[str, dict[str, _Value]] = {}
        self.preferred: dict[str, str] = {}
        # Per item and instance: the order of its latest report of a content it
        # has left; its reports up to there are no votes.
        self.since: dict[str, dict[str, tuple[datetime, int, str, str]]] = {}
        self.dirty: dict[str, None] = {}
        # Every id (given or derived) and normalized subject -> the item's key.
        self.by_id: dict[str, str] = {}
        self.by_subject: dict[str, str] = {}
        # What each instance last said about an item or characteristic key
        # (hash of its normalized content or value): a check-in's state that
        # repeats it is no new report, even after it lost a conflict.
        self.said: dict[str, dict[str, str]] = {}
        self.char_said: dict[str, dict[str, str]] = {}
        self.characteristics: dict[str, Characteristic] = {}
        self.char_order: dict[str, tuple[int, str]] = {}
        self.char_dirty: dict[str, None] = {}

    @property
    def integrated(self) -> int:
        """How many items are integrated."""
        return sum(1 for k in self.items.values() if k.status == "integrated")

    def merge(self, ctx: MergeContext, ev: ExperienceEvent, desk: ConflictDesk) -> None:
        """Merge one knowledge event (already known to be new to the log)."""
        data = ev.knowledge
        key = self.find(data.knowledge_id, data.subject, data.content)
        report = KnowledgeReport(
            ev.source_instance, ev.event_id, ev.timestamp, ev.lamport, data.confidence
        )
        item = self.items.get(key)
        said = _said(data.content)
        if (item is not None and not ctx.force and is_reconciliation(ev)
                and self._restates(key, item, report, said)):
            return
        self.said.setdefault(key, {})[report.instance_id] = said
        if item is None:
            self._replace(ctx, key, ev, report)
            ctx.result.knowledge_added += 1
            return
        item = self._identify(key, item, data.knowledge_id, data.subject)
        self._weigh(ctx, key, item, ev, report, desk)

    def _weigh(
        self,
        ctx: MergeContext,
        key: str,
        item: KnowledgeItem,
        ev: ExperienceEvent,
        report: KnowledgeReport,
        desk: ConflictDesk,
    ) -> None:
        """Fold one report into the item's contents and let the evidence pick the standing one."""
        data = ev.knowledge
        mine, standing = _said(data.content), _said(item.content)
        values = {standing: _Value(item.content, list(self.reports[key]), self.floors.get(key))}
        for said, alt in self.alternatives.get(key, {}).items():
            values[said] = _Value(alt.content, list(alt.reports), alt.floor)
        inst = report.instance_id
        since = self.since.setdefault(key, {})
        later = [r.order for said, v in values.items() if said != mine
                 for r in v.reports if r.instance_id == inst]
        stale = bool(later) and max(later) > report.order
        was_verifier = inst in {r.instance_id for r in values.get(mine, _Value("")).reports}
        if stale:
            # This instance has since said something else: an older statement, no vote,
            # and what it said before that statement no longer counts either.
            since[inst] = max(since.get(inst, report.order), report.order)
        else:
            for said, v in values.items():
                if said != mine:  # an instance's latest report is its only vote
                    moved = [r.order for r in v.reports if r.instance_id == inst]
                    if moved:
                        since[inst] = max([*moved, *([since[inst]] if inst in since else [])])
                    v.reports = [r for r in v.reports if r.instance_id != inst]
            target = values.setdefault(mine, _Value(data.content))
            target.reports.append(report)
            target.reports.sort(key=lambda r: r.order)
        if inst in since:  # the result is the same whatever order the reports came in
            barrier = since[inst]
            for v in values.values():
                v.reports = [r for r in v.reports if r.instance_id != inst or r.order > barrier]
        vote = None if stale else mine
        if ctx.force:
            self.preferred[key] = mine
        winner = self._choose(ctx, key, values, standing, vote, ev, desk)
        if winner is None:
            return  # queued for review: nothing applied until it is decided
        for v in values.values():
            if len(v.reports) > MAX_REPORTS:
                self._compact(v, item.integrated_at if v is values[standing] else None)
        chosen = values[winner]
        before = item.status if winner == standing else "pending"
        if winner != standing:
            # Another content stands; the previous one is kept as an alternative.
            item = item.model_copy(update={"content": chosen.content})
        self.reports[key] = chosen.reports
        if chosen.floor is not None:
            self.floors[key] = chosen.floor
        else:
            self.floors.pop(key, None)
        alternatives = {s: v for s, v in values.items() if s != winner and v.reports}
        if not chosen.reports:  # pragma: no cover - a content with no vote never wins
            return
        if alternatives:
            self.alternatives[key] = alternatives
        else:
            self.alternatives.pop(key, None)
        folded = self._fold(item, chosen.reports, ctx.cursor, chosen.floor)
        self.items[key] = folded.model_copy(update={
            "first_seen": min(folded.first_seen, ev.timestamp),
            "alternatives": _alternatives(alternatives),
        })
        self.dirty[key] = None
        if vote == winner and not was_verifier:
            ctx.result.knowledge_verified += 1
        if before != "integrated" and self.items[key].status == "integrated":
            ctx.result.knowledge_integrated += 1

    def _choose(
        self,
        ctx: MergeContext,
        key: str,
        values: dict[str, _Value],
        standing: str,
        mine: str | None,
        ev: ExperienceEvent,
        desk: ConflictDesk,
    ) -> str | None:
        """The content that stands, by the evidence; ``None``: the report was queued for review.

        The most verifying instances win. A tie goes to a reviewer's earlier
        choice, else to the resolver, pairwise (``queue`` opens a review for a
        report whose content ties with the standing one; it is not applied).
        """
        top = max(v.support for v in values.values())
        tied = sorted(s for s, v in values.items() if v.support == top)
        contested = mine is not None and mine != standing and not ctx.force
        if len(tied) == 1:
            winner = tied[0]
            if contested:
                desk.settle(ctx, "knowledge", key, "apply" if winner == mine else "keep", ev)
            return winner
        preferred = self.preferred.get(key)
        if preferred in tied:
            assert preferred is not None
            if contested:
                desk.settle(ctx, "knowledge", key, "apply" if preferred == mine else "keep", ev,
                            strategy="review")
            return preferred
        best = standing if standing in tied else tied[0]
        done = {best}
        counted = False
        if contested and mine in tied and standing in tied:
            resolution = desk.resolve(ctx, "knowledge", key, self._side(desk, values[standing]),
                                      self._side(desk, values[mine]), ev)
            if resolution.action == "queue":
                return None
            if resolution.action == "apply" and _said(resolution.value) == mine:
                best = mine
            done, counted = {standing, mine or standing}, True
        for said in tied:  # the rest of a tie of three or more, through the same resolver
            if said in done:
                continue
            answer = desk.resolver.resolve(self._side(desk, values[best]),
                                           self._side(desk, values[said]))
            if answer.action == "apply" and _said(answer.value) == said:
                best = said
        if contested and not counted:
            desk.settle(ctx, "knowledge", key, "apply" if best == mine else "keep", ev)
        return best

    @staticmethod
    def _side(desk: ConflictDesk, value: _Value) -> ContestedValue:
        """A content as one side of a tie: its combined confidence and its latest report."""
        latest = value.latest()
        last = max(latest.values(), key=lambda r: r.order)
        confidence = combined_confidence([latest[i].confidence for i in sorted(latest)])
        return desk.side(value.content, confidence, last.timestamp, last.lamport,
                         last.instance_id)

    def _restates(
        self, key: str, item: KnowledgeItem, report: KnowledgeReport, said: str
    ) -> bool:
        """Whether a check-in's state repeats what this instance already said of the item.

        The same content it last reported (whether it stands or lost a
        conflict since), with, if it stands, the same confidence.
        """
        if self.said.get(key, {}).get(report.instance_id) != said:
            return False
        mine = item.verifications.get(report.instance_id)
        if _said(item.content) != said:
            return True
        return mine is not None and mine.confidence == report.confidence

    def find(self, knowledge_id: str | None, subject: str | None, content: str) -> str:
        """The key of the item a report is about (a new key if there is none).

        By id first; else by normalized subject, unless the report brings an
        id and the subject's item already has another id of its own (two ids
        are two items); else by content.
        """
        if knowledge_id and knowledge_id in self.by_id:
            return self.by_id[knowledge_id]
        norm = normalize(subject) if subject else ""
        if norm and norm in self.by_subject:
            key = self.by_subject[norm]
            if not knowledge_id or not _has_own_id(self.items[key]):
                return key
        return knowledge_key(knowledge_id, subject, content)

    def _identify(
        self, key: str, item: KnowledgeItem, knowledge_id: str | None, subject: str | None
    ) -> KnowledgeItem:
        """Record on ``item`` the id or subject a report brings that it lacks."""
        update: dict[str, Any] = {}
        if knowledge_id and knowledge_id not in self.by_id and not _has_own_id(item):
            update["knowledge_id"] = knowledge_id
            self.by_id[knowledge_id] = key
        norm = normalize(subject) if subject else ""
        if norm and not (item.subject and normalize(item.subject)):
            update["subject"] = subject
            self.by_subject.setdefault(norm, key)
        if update:
            item = self.items[key] = item.model_copy(update=update)
            self.dirty[key] = None
        return item

    def _index(self, item: KnowledgeItem) -> None:
        self.by_id.setdefault(item.knowledge_id, item.key)
        self.by_id.setdefault(_derived_id(item.key), item.key)
        if item.subject and normalize(item.subject):
            self.by_subject.setdefault(normalize(item.subject), item.key)

    def _replace(
        self,
        ctx: MergeContext,
        key: str,
        ev: ExperienceEvent,
        report: KnowledgeReport,
        first_seen: datetime | None = None,
    ) -> None:
        data = ev.knowledge
        old = self.items.get(key)
        item = KnowledgeItem.model_construct(
            # Replaced content keeps the identity the item already had.
            knowledge_id=old.knowledge_id if old is not None else (
                data.knowledge_id or _derived_id(key)
            ),
            key=key,
            subject=old.subject if old is not None and old.subject else data.subject,
            content=data.content,
            confidence=0.0,
            status="pending",
            verifications={},
            first_seen=first_seen or ev.timestamp,
            integrated_at=None,
            version=ctx.cursor,
        )
        self.reports[key] = [report]
        self.floors.pop(key, None)
        self.alternatives.pop(key, None)
        self.since.pop(key, None)
        self.items[key] = self._fold(item, [report], ctx.cursor)
        self.dirty[key] = None
        self._index(item)

    @staticmethod
    def _compact(value: _Value, integrated_at: datetime | None) -> None:
        """Keep only each instance's latest report (bounds repeated reports).

        The integration time reached so far is kept as a floor, so an
        integrated item stays integrated.
        """
        if integrated_at is not None:
            value.floor = min(value.floor, integrated_at) if value.floor else integrated_at
        value.reports = sorted(value.latest().values(), key=lambda r: r.order)

    def _fold(
        self,
        item: KnowledgeItem,
        reports: list[KnowledgeReport],
        version: int,
        floor: datetime | None = None,
    ) -> KnowledgeItem:
        latest: dict[str, KnowledgeReport] = {}
        integrated_at: datetime | None = None
        confidence = 0.0
        for r in reports:
            latest[r.instance_id] = r
            confidence = combined_confidence([latest[i].confidence for i in sorted(latest)])
            if (
                integrated_at is None
                and len(latest) >= MIN_VERIFICATIONS
                and confidence >= self.threshold
            ):
                integrated_at = r.timestamp
        if floor is not None:
            integrated_at = floor if integrated_at is None else min(floor, integrated_at)
        verifications = {
            i: Verification.model_construct(
                instance_id=i,
                confidence=latest[i].confidence,
                event_id=latest[i].event_id,
                timestamp=latest[i].timestamp,
            )
            for i in sorted(latest)
        }
        return item.model_copy(
            update={
                "confidence": confidence,
                "status": "integrated" if integrated_at is not None else "pending",
                "verifications": verifications,
                "first_seen": min(item.first_seen, reports[0].timestamp),
                "integrated_at": integrated_at,
                "version": version,
            }
        )

    # ------------------------------------------------------------------ characteristics

    def merge_characteristic(
        self, ctx: MergeContext, ev: ExperienceEvent, desk: ConflictDesk
    ) -> None:
        """Merge one characteristic event: new key, corroboration, or conflict."""
        data = ev.data
        key: str = data.key  # type: ignore[union-attr]
        value: Any = data.value  # type: ignore[union-attr]
        confidence: float = data.confidence  # type: ignore[union-attr]
        current = self.characteristics.get(key)
        said = _said(value)
        by_instance = self.char_said.setdefault(key, {})
        if not ctx.force and is_reconciliation(ev) and by_instance.get(ev.source_instance) == said:
            return  # a check-in's state repeating what this instance said
        by_instance[ev.source_instance] = said
        if current is not None:
            self.char_dirty[key] = None  # the row keeps what instances said
        incoming_order = (ev.lamport, ev.event_id)
        if current is None:
            self._set_char(ctx, key, value, confidence, ev, incoming_order)
            return
        lamport, event_id = self.char_order[key]
        later = order_key(ev.timestamp, ev.lamport, ev.source_instance, ev.event_id) > order_key(
            current.updated_at, lamport, current.source_instance, event_id
        )
        if _same(current.value, value):
            if later:
                self._set_char(ctx, key, value, confidence, ev, incoming_order)
            return
        if ctx.force:
            self._set_char(ctx, key, value, confidence, ev, incoming_order)
            return
        resolution = desk.resolve(
            ctx,
            "characteristic",
            key,
            desk.side(current.value, current.confidence, current.updated_at, lamport,
                      current.source_instance),
            desk.side(value, confidence, ev.timestamp, ev.lamport, ev.source_instance),
            ev,
        )
        if resolution.action == "apply":
            conf = resolution.confidence if resolution.confidence is not None else confidence
            if later:
                self._set_char(ctx, key, resolution.value, conf, ev, incoming_order)
            else:  # a merged value (weighted numbers) keeps the later side's identity
                self._set_char_value(ctx, key, resolution.value, conf)
        elif resolution.action == "keep" and resolution.confidence is not None:
            self._set_char_value(ctx, key, current.value, resolution.confidence)

    def _set_char(
        self,
        ctx: MergeContext,
        key: str,
        value: Any,
        confidence: float,
        ev: ExperienceEvent,
        order: tuple[int, str],
    ) -> None:
        self.characteristics[key] = Characteristic.model_construct(
            key=key,
            value=value,
            confidence=min(1.0, max(0.0, confidence)),
            source_instance=ev.source_instance,
            updated_at=ev.timestamp,
            version=ctx.cursor,
        )
        self.char_order[key] = order
        self.char_dirty[key] = None
        ctx.result.characteristics_updated += 1

    def _set_char_value(self, ctx: MergeContext, key: str, value: Any, confidence: float) -> None:
        self.characteristics[key] = self.characteristics[key].model_copy(
            update={
                "value": value,
                "confidence": min(1.0, max(0.0, confidence)),
                "version": ctx.cursor,
            }
        )
        self.char_dirty[key] = None
        ctx.result.characteristics_updated += 1

    # ------------------------------------------------------------------ persistence

    def load(self, knowledge: list[StoredRow], characteristics: list[StoredRow]) -> None:
        """Restore knowledge items, their reports, and characteristics."""
        for row in knowledge:
            body = json.loads(row.body)
            item = KnowledgeItem.model_validate(body["item"])
            self.items[item.key] = item
            self._index(item)
            self.reports[item.key] = [KnowledgeReport.from_json(r) for r in body["reports"]]
            if body.get("floor"):
                self.floors[item.key] = datetime.fromisoformat(body["floor"])
            if body.get("said"):
                self.said[item.key] = body["said"]
            if body.get("alternatives"):
                self.alternatives[item.key] = {
                    _said(v.content): v
                    for v in (_Value.from_json(a) for a in body["alternatives"])
                }
            if body.get("preferred"):
                self.preferred[item.key] = body["preferred"]
            if body.get("since"):
                self.since[item.key] = {
                    i: (datetime.fromisoformat(o[0]), o[1], o[2], o[3])
                    for i, o in body["since"].items()
                }
        for row in characteristics:
            body = json.loads(row.body)
            ch = Characteristic.model_validate(body["item"])
            self.characteristics[ch.key] = ch
            self.char_order[ch.key] = (body["lamport"], body["event_id"])
            if body.get("said"):
                self.char_said[ch.key] = body["said"]

    def take_rows(self) -> tuple[list[StoredRow], list[StoredRow]]:
        """Rows of the knowledge items and characteristics changed since the last call."""
        knowledge = []
        for key in self.dirty:
            item = self.items[key]
            body: dict[str, Any] = {
                "item": item.model_dump(mode="json"),
                "reports": [r.to_json() for r in self.reports[key]],
                "floor": self.floors[key].isoformat() if key in self.floors else None,
                "said": self.said.get(key, {}),
            }
            if key in self.alternatives:
                body["alternatives"] = [v.to_json() for v in self.alternatives[key].values()]
            if key in self.preferred:
                body["preferred"] = self.preferred[key]
            if self.since.get(key):
                body["since"] = {i: [o[0].isoformat(), o[1], o[2], o[3]]
                                 for i, o in self.since[key].items()}
            knowledge.append(StoredRow(key, item.version, json.dumps(body)))
        chars = []
        for key in self.char_dirty:
            ch = self.characteristics[key]
            lamport, event_id = self.char_order[key]
            row = {"item": ch.model_dump(mode="json"), "lamport": lamport, "event_id": event_id,
                   "said": self.char_said.get(key, {})}
            chars.append(StoredRow(key, ch.version, json.dumps(row)))
        self.dirty.clear()
        self.char_dirty.clear()
        return knowledge, chars


def _alternatives(values: dict[str, _Value]) -> list[KnowledgeAlternative]:
    """The public view of the dissenting contents: most verified first, then by content."""
    out = []
    for _, v in sorted(values.items(), key=lambda kv: (-kv[1].support, kv[0])):
        latest = v.latest()
        out.append(KnowledgeAlternative.model_construct(
            content=v.content,
            confidence=combined_confidence([latest[i].confidence for i in sorted(latest)]),
            verifications={
                i: Verification.model_construct(
                    instance_id=i, confidence=latest[i].confidence,
                    event_id=latest[i].event_id, timestamp=latest[i].timestamp)
                for i in sorted(latest)
            },
        ))
    return out


def _said(value: Any) -> str:
    """A short fingerprint of a content or value (strings compared normalized)."""
    text = normalize(value) if isinstance(value, str) else json.dumps(
        value, sort_keys=True, default=repr
    )
    return short_hash(text, size=8)


def _derived_id(key: str) -> str:
    """The id of an item reported without one: derived from its key."""
    return "kn-" + short_hash(key, size=8)


def _has_own_id(item: KnowledgeItem) -> bool:
    """Whether the item's id was given by a report (not derived from its key)."""
    return item.knowledge_id != _derived_id(item.key)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return normalize(a) == normalize(b)
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return bool(a == b)


def stored_knowledge(body: str) -> KnowledgeItem:
    """The item of a stored knowledge row (what the integrator's ``load`` restores)."""
    return KnowledgeItem.model_validate(json.loads(body)["item"])
