"""Property tests of the merge engine: idempotency, order independence, replay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.models import EventsRequest, ExperienceEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
AGENT = "agent-p"
INSTANCES = ["i1", "i2", "i3"]
MEMORIES = [
    "The user likes green tea",
    "the user LIKES green tea!",
    "The user does not like green tea",
    "Green tea is liked by the user",
    "The office opens at 9 am",
    "The office opens at 10 am",
    "Alice manages the billing team",
    "Bob manages the billing team",
]
SKILLS = ["Python", "python!", "Web search", "SQL"]
SUBJECTS = {"rate limit": "The rate limit is 100 rpm", "office": "The office is in Paris",
            "deploy": "Deploys happen on Tuesday"}
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _event(i: int, kind: str, inst: str, t: int, lamport: int, pick: int, num: float,
           inv: int) -> ExperienceEvent:
    data: dict[str, Any]
    if kind == "memory":
        data = {"content": MEMORIES[pick % len(MEMORIES)], "confidence": num,
                "importance": 1 - num, "tags": [f"t{pick % 3}"]}
    elif kind == "skill":
        data = {"name": SKILLS[pick % len(SKILLS)], "proficiency": None if pick % 5 == 0 else num,
                "usage": {"invocations": inv, "successes": inv // 2,
                          "contexts": [f"c{pick % 2}"]}}
    elif kind == "knowledge":
        subject = sorted(SUBJECTS)[pick % len(SUBJECTS)]
        data = {"subject": subject, "content": SUBJECTS[subject], "confidence": num}
    elif kind == "characteristic":
        data = {"key": f"k{pick % 2}", "value": ["low", "high", 3][pick % 3], "confidence": num}
    else:
        data = {"summary": f"talk {pick}"}
    return ExperienceEvent.model_validate(
        {"event_id": f"e{i}", "timestamp": T0 + timedelta(seconds=t), "source_instance": inst,
         "event_type": kind, "data": data, "lamport": lamport}
    )


def event_lists(kinds: list[str]) -> st.SearchStrategy[list[ExperienceEvent]]:
    one = st.tuples(
        st.sampled_from(kinds),
        st.sampled_from(INSTANCES),
        st.integers(0, 5),
        st.integers(0, 2),
        st.integers(0, 20),
        st.sampled_from([0.1, 0.35, 0.5, 0.7, 0.9]),
        st.integers(0, 30),
    )
    return st.lists(one, min_size=1, max_size=25).map(
        lambda rows: [_event(i, *row) for i, row in enumerate(rows)]
    )


def chunks(events: list[ExperienceEvent], cuts: list[int]) -> list[list[ExperienceEvent]]:
    out, start = [], 0
    for cut in [*sorted({c % (len(events) + 1) for c in cuts}), len(events)]:
        if cut > start:
            out.append(events[start:cut])
            start = cut
    return out


def ingest(engine: MergeEngine, events: list[ExperienceEvent], cuts: list[int]) -> None:
    for part in chunks(events, cuts):
        for inst in INSTANCES:
            mine = [e for e in part if e.source_instance == inst]
            if mine:
                engine.ingest_events(AGENT, EventsRequest(instance_id=inst, events=mine))


def new_engine(**strategy: Any) -> MergeEngine:
    return MergeEngine(open_store("sqlite:///:memory:"), MergeStrategyConfig(**strategy))


def without_versions(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: without_versions(v) for k, v in obj.items() if k != "version"}
    if isinstance(obj, list):
        return [without_versions(v) for v in obj]
    return obj


ALL_KINDS = ["memory", "skill", "knowledge", "characteristic", "interaction"]
STRATEGIES = st.sampled_from(["latest_wins", "weighted_merge", "manual_review"])


@PROPERTY_SETTINGS
@given(events=event_lists(ALL_KINDS), cuts=st.lists(st.integers(0, 30), max_size=4),
       cuts2=st.lists(st.integers(0, 30), max_size=4), strategy=STRATEGIES,
       subset=st.lists(st.integers(0, 24), max_size=25))
def test_delivering_events_twice_changes_nothing(
    events: list[ExperienceEvent], cuts: list[int], cuts2: list[int], strategy: str,
    subset: list[int],
) -> None:
    engine = new_engine(conflict_resolution=strategy)
    try:
        ingest(engine, events, cuts)
        before = engine.state(AGENT)
        again = [events[i] for i in sorted(set(subset)) if i < len(events)] or events
        ingest(engine, again, cuts2)
        ingest(engine, events, cuts2)
        assert engine.state(AGENT) == before
    finally:
        engine.close()


@PROPERTY_SETTINGS
@given(events=event_lists(["skill", "knowledge"]), cuts=st.lists(st.integers(0, 30), max_size=4),
       strategy=st.sampled_from(["latest_wins", "weighted_merge"]),
       aggregation=st.sampled_from(["max", "average", "weighted"]), data=st.data())
def test_skills_and_knowledge_do_not_depend_on_arrival_order(
    events: list[ExperienceEvent], cuts: list[int], strategy: str, aggregation: str,
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(events))
    states = []
    for order in (events, shuffled):
        engine = new_engine(conflict_resolution=strategy, skill_aggregation=aggregation)
        try:
            ingest(engine, list(order), cuts)
            s = engine.state(AGENT)
            states.append((
                without_versions(sorted((x.model_dump() for x in s.skills),
                                        key=lambda d: d["skill_id"])),
                without_versions(sorted((x.model_dump() for x in s.knowledge),
                                        key=lambda d: d["key"])),
            ))
        finally:
            engine.close()
    assert states[0] == states[1]


@PROPERTY_SETTINGS
@given(events=event_lists(ALL_KINDS), cuts=st.lists(st.integers(0, 30), max_size=4),
       strategy=STRATEGIES, aggregation=st.sampled_from(["max", "average", "weighted"]),
       decisions=st.lists(st.booleans(), max_size=6))
def test_replay_reproduces_the_live_state(
    events: list[ExperienceEvent], cuts: list[int], strategy: str, aggregation: str,
    decisions: list[bool],
) -> None:
    config = MergeStrategyConfig(conflict_resolution=strategy, skill_aggregation=aggregation)
    store = open_store("sqlite:///:memory:")
    engine = MergeEngine(store, config)
    try:
        ingest(engine, events, cuts)
        for review, accept in zip(engine.reviews(AGENT), decisions, strict=False):
            engine.decide_review(AGENT, review.review_id, accept)
        live = engine.state(AGENT)
        assert replay(store, AGENT, config) == live
        # and once more from the rebuilt store, into a fresh one
        other = open_store("sqlite:///:memory:")
        assert replay(store, AGENT, config, other) == live
        other.close()
    finally:
        engine.close()
