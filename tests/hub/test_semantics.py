"""Merge semantics: what counts as a conflict, a new report, or the same item.

Engine-level, on real SQLite files, through the public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.models import (
    CheckIn,
    EventsRequest,
    ExperienceEvent,
    InstanceState,
    KnowledgeData,
    MemoryData,
    SkillData,
    SkillUsageReport,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
AGENT = "agent-s"


def ev(
    event_id: str, event_type: str, data: dict[str, Any], instance: str = "i1", t: float = 0
) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": event_id,
            "timestamp": T0 + timedelta(seconds=t),
            "source_instance": instance,
            "event_type": event_type,
            "data": data,
        }
    )


def send(engine: MergeEngine, *events: ExperienceEvent) -> Any:
    return engine.ingest_events(
        AGENT, EventsRequest(instance_id=events[0].source_instance, events=list(events))
    )


def checkin(engine: MergeEngine, instance: str, t: float, state: InstanceState) -> Any:
    return engine.ingest_checkin(
        AGENT, CheckIn(instance_id=instance, timestamp=T0 + timedelta(seconds=t), state=state)
    )


def skill(eid: str, inst: str, prof: float, inv: int, t: float = 0) -> ExperienceEvent:
    data = {"name": "triage", "proficiency": prof, "usage": {"invocations": inv, "successes": inv}}
    return ev(eid, "skill", data, instance=inst, t=t)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., MergeEngine]]:
    engines: list[MergeEngine] = []

    def _make(name: str = "hub", **strategy: Any) -> MergeEngine:
        store = open_store(f"sqlite:///{tmp_path}/{name}.db")
        engine = MergeEngine(store, MergeStrategyConfig(**strategy))
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.close()


# --------------------------------------------------------------------------- skills


def test_own_skill_progress_is_never_a_conflict(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    r1 = send(engine, skill("a", "i1", 0.2, 1), skill("b", "i1", 0.9, 2, t=1))
    assert r1.conflicts.total == 0
    (s,) = engine.skills(AGENT)
    assert s.proficiency == 0.9 and [p.proficiency for p in s.learning_curve] == [0.2, 0.9]
    assert engine.reviews(AGENT) == []


def test_a_gap_of_exactly_the_margin_is_no_conflict(
    make_engine: Callable[..., MergeEngine],
) -> None:
    # The demo's case: 0.9 - 0.6 is 0.30000000000000004 in floating point.
    engine = make_engine(conflict_resolution="manual_review", skill_conflict_margin=0.3)
    send(engine, skill("a", "i1", 0.6, 1))
    r = send(engine, skill("b", "i2", 0.9, 1, t=1))
    assert r.conflicts.total == 0 and engine.reviews(AGENT) == []


def test_skill_conflict_is_between_instances(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review", skill_conflict_margin=0.3)
    send(engine, skill("a", "i1", 0.3, 1), skill("c", "i3", 0.5, 1))
    send(engine, skill("b", "i2", 0.5, 1, t=1))
    r = send(engine, skill("d", "i2", 0.9, 2, t=2))
    assert r.conflicts.model_dump() == {"total": 1, "resolved": 0, "queued": 1}
    (review,) = engine.reviews(AGENT)
    # The other side is the other instance's report that differs most.
    assert review.current["instance_id"] == "i1" and review.current["value"] == 0.3
    assert review.proposed["instance_id"] == "i2" and review.proposed["value"] == 0.9


def test_checkin_state_repeating_a_queued_skill_report_opens_no_second_review(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, skill("a", "i1", 0.2, 3))
    r = send(engine, skill("b", "i2", 0.9, 4, t=1))
    assert r.conflicts.queued == 1
    state = InstanceState(skills=[SkillData(
        name="triage", proficiency=0.9, usage=SkillUsageReport(invocations=4, successes=4))])
    r = checkin(engine, "i2", 5, state)
    assert r.accepted_event_ids and r.conflicts.total == 0
    assert len(engine.reviews(AGENT)) == 1
    # The same for an applied report: the restated one changes nothing.
    before = engine.skills(AGENT)
    r = checkin(engine, "i1", 6, InstanceState(skills=[SkillData(
        name="triage", proficiency=0.2, usage=SkillUsageReport(invocations=3, successes=3))]))
    assert r.skills_updated == 0 and engine.skills(AGENT) == before


# --------------------------------------------------------------------------- check-in memories


def test_checkin_state_does_not_inflate_streamed_memories(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    send(engine, ev("m1", "memory", {"content": "The portal logs users out after 15 minutes"}),
         ev("m2", "memory", {"content": "Invoices are resent from the billing page"}, t=1))
    send(engine, ev("m3", "memory", {"content": "The portal logs users out after 15 minutes!"},
                    instance="i2", t=2))
    before = {m.memory_id: m for m in engine.state(AGENT).memories}
    state = InstanceState(memories=[
        MemoryData(content="the Portal logs users out after 15 minutes."),  # already reported
        MemoryData(content="Invoices are resent from the billing page"),  # already reported
        MemoryData(content="Enterprise customers have an account manager"),  # missing
    ])
    r = checkin(engine, "i1", 10, state)
    assert (r.memories_added, r.memories_merged) == (1, 0)
    after = {m.memory_id: m for m in engine.state(AGENT).memories}
    for mid, m in before.items():
        assert after[mid] == m  # no count, source event or timestamp changed
    # Another instance's full state is a new report where it is not a source yet.
    r = checkin(engine, "i3", 11, state)
    assert r.memories_merged == 3
    portal = next(m for m in engine.state(AGENT).memories if "portal" in m.content.lower())
    assert portal.access_count == 3 and portal.source_instances == ["i1", "i2", "i3"]


def test_checkin_state_does_not_bring_back_a_superseded_statement(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()  # latest_wins
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris"}))
    send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    state = InstanceState(memories=[MemoryData(content="Order 1234 shipped to Paris")])
    r = checkin(engine, "i1", 60, state)
    assert r.conflicts.total == 0
    (m,) = engine.state(AGENT).memories
    assert m.content == "Order 9876 shipped to Paris"


# --------------------------------------------------------------------------- contradictions


def test_changed_number_under_latest_wins_supersedes_and_keeps_the_old_statement(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris"}))
    r = send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    assert (r.memories_added, r.memories_merged) == (0, 0)
    assert r.conflicts.model_dump() == {"total": 1, "resolved": 1, "queued": 0}
    (m,) = engine.state(AGENT).memories
    assert m.content == "Order 9876 shipped to Paris"
    (old,) = m.superseded
    assert (old.content, old.instance_id, old.event_id, old.timestamp) == (
        "Order 1234 shipped to Paris", "i1", "a", T0)


def test_contradiction_record_does_not_depend_on_arrival_order(
    make_engine: Callable[..., MergeEngine],
) -> None:
    old = ev("a", "memory", {"content": "Order 1234 shipped to Paris"})
    new = ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5)
    results = []
    for name, order in (("fwd", [old, new]), ("rev", [new, old])):
        engine = make_engine(name)
        counts = [send(engine, e) for e in order]
        assert sum(r.memories_merged for r in counts) == 0
        assert sum(r.conflicts.total for r in counts) == 1
        (m,) = engine.state(AGENT).memories
        results.append((m.content, [(s.content, s.event_id) for s in m.superseded]))
    assert results[0] == results[1] == (
        "Order 9876 shipped to Paris", [("Order 1234 shipped to Paris", "a")])


def test_changed_number_under_manual_review_applies_nothing_until_accepted(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris"}))
    r = send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    assert (r.memories_merged, r.conflicts.queued) == (0, 1)
    (m,) = engine.state(AGENT).memories
    assert m.content == "Order 1234 shipped to Paris" and m.superseded == []
    (review,) = engine.reviews(AGENT)
    engine.decide_review(AGENT, review.review_id, accept=True)
    (m,) = engine.state(AGENT).memories
    assert m.content == "Order 9876 shipped to Paris"
    assert [s.content for s in m.superseded] == ["Order 1234 shipped to Paris"]


def test_changed_number_under_weighted_merge_keeps_the_heavier_side(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(conflict_resolution="weighted_merge")
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris", "confidence": 0.9}))
    r = send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris",
                                        "confidence": 0.3}, "i2", t=5))
    assert (r.memories_merged, r.conflicts.resolved) == (0, 1)
    (m,) = engine.state(AGENT).memories
    assert m.content == "Order 1234 shipped to Paris"
    assert [(s.content, s.instance_id) for s in m.superseded] == [
        ("Order 9876 shipped to Paris", "i2")]


def test_superseded_record_survives_restart_and_replay(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris"}))
    send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    live = engine.state(AGENT)
    assert make_engine().state(AGENT) == live
    rebuilt = replay(engine.store, AGENT, MergeStrategyConfig(), make_engine("copy").store)
    assert rebuilt.memories == live.memories


# --------------------------------------------------------------------------- knowledge


def know(eid: str, inst: str, *, kid: str | None = None, subject: str | None = None,
         content: str = "Refunds above 500 EUR need approval", t: float = 0) -> ExperienceEvent:
    data = KnowledgeData(content=content, knowledge_id=kid, subject=subject, confidence=0.7)
    return ev(eid, "knowledge", data.model_dump(exclude_none=True), instance=inst, t=t)


@pytest.mark.parametrize("first_by_id", [True, False])
def test_knowledge_found_by_id_or_subject_is_one_item(
    make_engine: Callable[..., MergeEngine], first_by_id: bool
) -> None:
    engine = make_engine()
    by_id = know("a", "i1", kid="refund-limit", subject="Refund limit")
    by_subject = know("b", "i2", subject="refund LIMIT", t=1)
    send(engine, *([by_id, by_subject] if first_by_id else [by_subject, by_id]))
    (k,) = engine.knowledge(AGENT)
    assert k.knowledge_id == "refund-limit" and k.status == "integrated"
    assert sorted(k.verifications) == ["i1", "i2"]
    # Afterwards either the id alone or the subject alone finds it.
    send(engine, know("c", "i3", kid="refund-limit", t=2), know("d", "i4", subject="refund limit"))
    (k,) = engine.knowledge(AGENT)
    assert sorted(k.verifications) == ["i1", "i2", "i3", "i4"]


def test_knowledge_id_only_then_subject_records_the_subject(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    send(engine, know("a", "i1", kid="refund-limit"))
    send(engine, know("b", "i2", kid="refund-limit", subject="refund limit", t=1))
    r = send(engine, know("c", "i3", subject="Refund limit", t=2))
    assert (r.knowledge_added, r.knowledge_verified) == (0, 1)
    (k,) = engine.knowledge(AGENT)
    assert k.subject == "refund limit" and len(k.verifications) == 3
    # The identity survives a restart.
    again = make_engine()
    send(again, know("d", "i4", subject="refund limit", t=3))
    (k,) = again.knowledge(AGENT)
    assert len(k.verifications) == 4


def test_two_ids_with_one_subject_are_two_items(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    send(engine, know("a", "i1", kid="limit-eu", subject="refund limit"),
         know("b", "i1", kid="limit-us", subject="refund limit", content="Refunds above 300 USD"))
    assert sorted(k.knowledge_id for k in engine.knowledge(AGENT)) == ["limit-eu", "limit-us"]


def test_knowledge_content_conflict_keeps_the_items_identity(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()  # latest_wins
    send(engine, know("a", "i1", kid="refund-limit", subject="refund limit"))
    r = send(engine, know("b", "i2", subject="refund limit", content="Refunds above 800 EUR need approval",
                          t=5))
    assert r.conflicts.resolved == 1
    (k,) = engine.knowledge(AGENT)
    assert k.knowledge_id == "refund-limit" and k.content.startswith("Refunds above 800")


# --------------------------------------------------------------------------- check-in: stale values


def test_checkin_state_does_not_bring_back_a_lost_characteristic_or_fact(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()  # latest_wins
    send(engine, ev("a", "characteristic", {"key": "tone", "value": "formal"}, "i1"),
         know("k1", "i1", subject="refund limit"))
    send(engine, ev("b", "characteristic", {"key": "tone", "value": "friendly"}, "i2", t=5),
         know("k2", "i2", subject="refund limit", content="Refunds above 800 EUR need approval",
              t=5))
    stale = InstanceState(characteristics={"tone": "Formal"}, knowledge=[KnowledgeData(
        subject="refund limit", content="Refunds above 500 EUR need approval", confidence=0.7)])
    before = engine.state(AGENT)
    r = checkin(engine, "i1", 60, stale)
    assert r.conflicts.total == 0 and len(r.accepted_event_ids) == 2
    after = engine.state(AGENT)
    assert after.characteristics == before.characteristics
    assert after.knowledge == before.knowledge
    # Known after a restart too; a value the instance never said is a new report.
    again = make_engine()
    r = checkin(again, "i1", 61, InstanceState(characteristics={"tone": "casual"}))
    assert r.conflicts.total == 1
    assert again.state(AGENT).characteristics["tone"].value == "casual"


def test_checkin_state_repeating_a_fact_changes_nothing(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    send(engine, know("k1", "i1", subject="refund limit"))
    before = engine.knowledge(AGENT)
    state = InstanceState(knowledge=[KnowledgeData(
        subject="Refund limit", content="Refunds above 500 EUR need approval", confidence=0.7)])
    r = checkin(engine, "i1", 60, state)
    assert (r.knowledge_added, r.knowledge_verified) == (0, 0)
    assert engine.knowledge(AGENT) == before
    # Another instance's state verifies it.
    r = checkin(engine, "i2", 61, state)
    assert r.knowledge_verified == 1


def test_accepting_a_review_opened_by_a_checkin_state_applies_it(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, ev("a", "characteristic", {"key": "tone", "value": "formal"}, "i1"),
         know("k1", "i1", subject="refund limit"), skill("s1", "i1", 0.1, 1))
    state = InstanceState(
        characteristics={"tone": "friendly"},
        knowledge=[KnowledgeData(subject="refund limit", content="Refunds above 800 EUR")],
        skills=[SkillData(name="triage", proficiency=0.9,
                          usage=SkillUsageReport(invocations=2, successes=2))],
    )
    r = checkin(engine, "i2", 5, state)
    assert r.conflicts.queued == 3
    for review in engine.reviews(AGENT):
        engine.decide_review(AGENT, review.review_id, accept=True)
    s = engine.state(AGENT)
    assert s.characteristics["tone"].value == "friendly"
    assert [k.content for k in s.knowledge] == ["Refunds above 800 EUR"]
    assert s.skills[0].per_instance["i2"].proficiency == 0.9


# --------------------------------------------------------------------------- skill aliases


def test_skill_aliases_merge_one_tool_named_differently_by_two_frameworks(
    make_engine: Callable[..., MergeEngine],
) -> None:
    aliases = {"tavily_search": "web_search", "Web Search Tool": "web_search"}
    usage = {"invocations": 4, "successes": 3}
    reports = [
        ev("s1", "skill", {"name": "Tavily-Search", "usage": usage}, "lc-1"),
        ev("s2", "skill", {"name": "web search tool", "usage": usage}, "crew-1"),
        ev("s3", "skill", {"name": "web_search", "usage": {"invocations": 2}}, "eliza-1"),
    ]
    engine = make_engine(skill_aliases=aliases)
    for report in reports:
        send(engine, report)
    (skill,) = engine.skills(AGENT)
    assert skill.name == "web_search"
    assert sorted(skill.per_instance) == ["crew-1", "eliza-1", "lc-1"]
    assert skill.usage.total_invocations == 10
    assert skill.usage.success_rate == pytest.approx(0.6)
    # Without aliases they are three skills.
    plain = make_engine("plain")
    for report in reports:
        send(plain, report)
    assert len(plain.skills(AGENT)) == 3


def test_skill_aliases_are_validated() -> None:
    from experience_sync.config import load_config
    from experience_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="skill_aliases"):
        load_config(environ={}, merge_strategy={"skill_aliases": {"  ": "web_search"}})
    cfg = load_config(environ={}, merge_strategy={"skill_aliases": {"Tavily_Search": "web_search"}})
    assert cfg.merge_strategy.skill_name("tavily search") == "web_search"
    assert cfg.merge_strategy.skill_name("other") == "other"
