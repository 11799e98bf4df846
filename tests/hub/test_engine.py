"""The merge engine through its public API, on real SQLite files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from experience_sync import hookimpl
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import IngestMeta, MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.models import (
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    ExperienceEvent,
    InstanceState,
    InstanceSummary,
    KnowledgeData,
    MemoryData,
    ObservabilityEvent,
    SkillData,
    SkillUsageReport,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
AGENT = "agent-a"


def ev(
    event_id: str,
    event_type: str,
    data: dict[str, Any],
    instance: str = "i1",
    t: float = 0,
    lamport: int = 0,
) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": event_id,
            "timestamp": T0 + timedelta(seconds=t),
            "source_instance": instance,
            "event_type": event_type,
            "data": data,
            "lamport": lamport,
        }
    )


def distinct(i: int) -> str:
    """A memory text sharing no word with ``distinct(j)`` for ``j != i`` (no digits)."""
    letters = "bcdfghjklmnpqrstvwxz"
    word = ""
    n = i + 1
    while n:
        n, r = divmod(n, len(letters))
        word += letters[r]
    return f"zo{word} ka{word} mi{word} and {word}ve"


def send(engine: MergeEngine, *events: ExperienceEvent, instance: str = "i1", **kw: Any) -> Any:
    return engine.ingest_events(
        AGENT, EventsRequest(instance_id=instance, events=list(events)), kw.get("meta")
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hub.db"


@pytest.fixture
def make_engine(store_url: str) -> Iterator[Callable[..., MergeEngine]]:
    engines: list[MergeEngine] = []

    def _make(url: str | None = None, **strategy: Any) -> MergeEngine:
        engine = MergeEngine(open_store(url or store_url), MergeStrategyConfig(**strategy))
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., MergeEngine]) -> MergeEngine:
    return make_engine()


# --------------------------------------------------------------------------- memories


def test_exact_duplicates_merge_by_normalized_hash(engine: MergeEngine) -> None:
    r = send(
        engine,
        ev("e1", "memory", {"content": "User prefers concise responses", "tags": ["style"],
                            "importance": 0.4, "confidence": 0.6}),
        ev("e2", "memory", {"content": "  user PREFERS concise responses!! ", "tags": ["ux"],
                            "importance": 0.9, "confidence": 0.5}, instance="i2", t=10),
    )
    assert (r.memories_added, r.memories_merged) == (1, 1)
    (m,) = engine.state(AGENT).memories
    assert m.content == "User prefers concise responses"
    assert m.tags == ["style", "ux"]
    assert m.importance == 0.9
    assert m.confidence == pytest.approx(1 - 0.4 * 0.5)  # noisy-or across instances
    assert m.access_count == 2
    assert m.source_instances == ["i1", "i2"]
    assert m.source_events == ["e1", "e2"]
    assert (m.created_at, m.updated_at) == (T0, T0 + timedelta(seconds=10))


def test_same_instance_repeating_does_not_inflate_confidence(engine: MergeEngine) -> None:
    send(engine, ev("e1", "memory", {"content": "Likes tea", "confidence": 0.6}),
         ev("e2", "memory", {"content": "likes tea.", "confidence": 0.5}))
    (m,) = engine.state(AGENT).memories
    assert m.confidence == 0.6


def test_similar_memories_merge_through_the_similarity_method(engine: MergeEngine) -> None:
    r = send(
        engine,
        ev("e1", "memory", {"content": "The user prefers short answers in the morning"}),
        ev("e2", "memory", {"content": "In the morning the user prefers short answers"}, t=1),
    )
    assert (r.memories_added, r.memories_merged) == (1, 1)


def test_deduplication_off_adds_every_memory(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(memory_deduplication=False)
    r = send(engine, ev("e1", "memory", {"content": "Likes tea"}),
             ev("e2", "memory", {"content": "likes tea"}))
    assert (r.memories_added, r.memories_merged) == (2, 0)


def test_contradicting_memory_is_a_conflict_latest_wins(engine: MergeEngine) -> None:
    send(engine, ev("e1", "memory", {"content": "The user likes green tea"}))
    r = send(engine, ev("e2", "memory", {"content": "The user does not like green tea"}, t=5))
    assert r.conflicts.model_dump() == {"total": 1, "resolved": 1, "queued": 0}
    (m,) = engine.state(AGENT).memories
    assert m.content == "The user does not like green tea"
    # An older contradiction arriving late loses.
    send(engine, ev("e3", "memory", {"content": "The user owns a red bicycle"}, t=9))
    r = send(engine, ev("e4", "memory", {"content": "The user does not own a red bicycle"}, t=1))
    assert r.conflicts.resolved == 1 and r.memories_added == 0
    assert "The user owns a red bicycle" in [m.content for m in engine.state(AGENT).memories]


def test_changed_number_is_never_merged(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, ev("e1", "memory", {"content": "The meeting is at 3 pm on Friday"}))
    r = send(engine, ev("e2", "memory", {"content": "The meeting is at 4 pm on Friday"}, t=5))
    assert r.memories_merged == 0 and r.conflicts.queued == 1
    (review,) = engine.reviews(AGENT)
    assert review.kind == "memory"
    assert review.current["value"] == "The meeting is at 3 pm on Friday"
    assert review.proposed["value"] == "The meeting is at 4 pm on Friday"
    engine.decide_review(AGENT, review.review_id, accept=True)
    (m,) = engine.state(AGENT).memories
    assert m.content == "The meeting is at 4 pm on Friday"


def test_memory_search_and_paging(engine: MergeEngine) -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "golf", "hotel", "india", "kilo", "lima"]
    send(engine, *[
        ev(f"e{i}", "memory", {"content": f"{w} likes {'tea' if i % 2 else 'coffee'} {w}{w}"})
        for i, w in enumerate(words)
    ])
    page, total = engine.memories(AGENT, q="TEA", offset=1, limit=2)
    assert total == 5 and len(page) == 2
    page, total = engine.memories(AGENT)
    assert total == 10


# --------------------------------------------------------------------------- embeddings


class CountingEmbedder:
    calls: list[int] = []

    @hookimpl
    def experience_sync_register_embedders(self, register: Any) -> None:
        from experience_sync.vectors import HashingEmbedder

        calls = self.calls

        class Counting(HashingEmbedder):
            name = "counting"

            def embed(self, texts: Any) -> Any:
                calls.append(len(texts))
                return super().embed(texts)

        register("counting", lambda config=None: Counting())


def test_embeddings_computed_once_per_memory_and_reused_at_load(
    make_engine: Callable[..., MergeEngine], register_plugin: Any
) -> None:
    plugin = CountingEmbedder()
    plugin.calls.clear()
    register_plugin(plugin, name="counting-embedder")
    engine = make_engine(similarity_method="embedding", embedder="counting")
    assert plugin.calls == [1]  # the start-up check embeds one string
    plugin.calls.clear()
    events = [ev(f"e{i}", "memory", {"content": distinct(i)}) for i in range(20)]
    send(engine, *events)
    assert plugin.calls == [20]  # one call for the whole request
    # Provided embeddings of the right dimension are used as given.
    vec = [1.0] + [0.0] * 383
    send(engine, ev("v1", "memory", {"content": "given vector", "embedding": vec}))
    assert plugin.calls == [20]
    engine.close()
    again = make_engine(similarity_method="embedding", embedder="counting")
    assert plugin.calls == [20, 1]  # only the start-up check
    assert len(again.state(AGENT).memories) == 21
    assert plugin.calls == [20, 1]  # the index was rebuilt from stored vectors
    r = send(again, ev("e99", "memory", {"content": distinct(3).upper()}))
    assert r.memories_merged == 1


class SynonymEmbedder:
    """An embedder that knows one synonym: ``likes`` and ``prefers`` share a dimension."""

    @hookimpl
    def experience_sync_register_embedders(self, register: Any) -> None:
        import numpy as np

        from experience_sync.api import Embedder

        vocab = ["user", "prefers", "green", "tea", "bike", "car", "owns", "a", "the"]

        class Synonyms(Embedder):
            name = "synonyms"
            dim = len(vocab) + 1

            def embed(self, texts: Any) -> Any:
                out = np.zeros((len(texts), self.dim), dtype=np.float32)
                for row, text in enumerate(texts):
                    for word in text.lower().replace(".", "").split():
                        word = "prefers" if word == "likes" else word
                        out[row, vocab.index(word) if word in vocab else -1] += 1.0
                norms = np.linalg.norm(out, axis=1, keepdims=True)
                return out / np.where(norms == 0, 1.0, norms)

        register("synonyms", lambda config=None: Synonyms())


def test_a_one_word_swap_merges_when_the_embedder_reads_the_words_as_synonyms(
    make_engine: Callable[..., MergeEngine], register_plugin: Any
) -> None:
    register_plugin(SynonymEmbedder(), name="synonym-embedder")
    engine = make_engine(similarity_method="embedding", embedder="synonyms",
                         similarity_threshold=0.9)
    r = send(engine, ev("e1", "memory", {"content": "The user prefers green tea"}))
    r = send(engine, ev("e2", "memory", {"content": "the user likes green tea"}, instance="i2"),
             instance="i2")
    assert r.memories_merged == 1 and r.outcomes.duplicate == 1
    # Another thing swapped for one word stays its own memory, although the
    # embedder puts the two sentences close (both unknown words share a slot).
    send(engine, ev("e3", "memory", {"content": "The user owns a bike"}))
    r = send(engine, ev("e4", "memory", {"content": "The user owns a kayak"}))
    assert r.outcomes.distinct == 1 and r.memories_merged == 0
    contents = sorted(m.content for m in engine.state(AGENT).memories)
    assert contents == ["The user owns a bike", "The user owns a kayak",
                        "The user prefers green tea"]


def test_a_one_word_swap_stays_distinct_on_the_jaccard_path(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(similarity_threshold=0.5)
    send(engine, ev("e1", "memory", {"content": "The user prefers green tea"}))
    send(engine, ev("e2", "memory", {"content": "the user likes green tea"}))
    assert len(engine.state(AGENT).memories) == 2


# --------------------------------------------------------------------------- skills


def skill(eid: str, inst: str, prof: float | None, inv: int, succ: int, t: float = 0,
          name: str = "Python") -> ExperienceEvent:
    return ev(eid, "skill", {"name": name, "proficiency": prof,
                             "usage": {"invocations": inv, "successes": succ,
                                       "contexts": [f"ctx-{inst}"]}}, instance=inst, t=t)


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("max", 0.8), ("average", 0.65), ("weighted", (0.5 * 10 + 0.8 * 30) / 40)],
)
def test_skill_aggregations(
    make_engine: Callable[..., MergeEngine], aggregation: str, expected: float
) -> None:
    engine = make_engine(skill_aggregation=aggregation)
    send(engine, skill("s1", "i1", 0.5, 10, 5), skill("s2", "i2", 0.8, 30, 27, t=1))
    (s,) = engine.skills(AGENT)
    assert s.proficiency == pytest.approx(expected)
    assert s.usage.total_invocations == 40
    assert s.usage.success_rate == pytest.approx(32 / 40)
    assert s.source_instances == ["i1", "i2"]
    assert s.usage.contexts == ["ctx-i1", "ctx-i2"]
    assert s.learning_curve[0].event == "s1"
    assert s.learning_curve[-1].proficiency == pytest.approx(expected)


def test_skill_reports_are_cumulative_never_doubled(engine: MergeEngine) -> None:
    send(engine, skill("s1", "i1", 0.5, 10, 5))
    send(engine, skill("s2", "i1", 0.6, 10, 5, t=1))  # same counts, new event: no doubling
    send(engine, skill("s3", "i1", 0.7, 15, 9, t=2))
    send(engine, skill("s0", "i1", 0.2, 4, 1, t=-5))  # a stale report arriving late
    (s,) = engine.skills(AGENT)
    assert s.usage.total_invocations == 15
    assert s.per_instance["i1"].event_id == "s3"
    assert s.proficiency == 0.7


def test_skills_match_by_id_then_normalized_name(engine: MergeEngine) -> None:
    r = send(engine,
             ev("a", "skill", {"name": "Web Search", "skill_id": "ws"}),
             ev("b", "skill", {"name": "web-search"}, instance="i2"),
             ev("c", "skill", {"name": "Totally other", "skill_id": "ws"}, instance="i3"))
    assert (r.skills_added, r.skills_updated) == (1, 2)
    (s,) = engine.skills(AGENT)
    assert s.skill_id == "ws"


def test_skill_disagreement_beyond_margin(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review", skill_conflict_margin=0.3)
    send(engine, skill("s1", "i1", 0.9, 5, 5))
    r = send(engine, skill("s2", "i2", 0.2, 5, 1, t=1))
    assert r.conflicts.queued == 1
    (s,) = engine.skills(AGENT)
    assert s.usage.total_invocations == 5  # nothing applied yet
    (review,) = engine.reviews(AGENT)
    engine.decide_review(AGENT, review.review_id, accept=True)
    (s,) = engine.skills(AGENT)
    assert s.usage.total_invocations == 10
    assert s.proficiency == 0.9  # max


def test_skill_disagreement_counted_but_aggregated_otherwise(engine: MergeEngine) -> None:
    send(engine, skill("s1", "i1", 0.9, 5, 5))
    r = send(engine, skill("s2", "i2", 0.2, 5, 1, t=1))
    assert r.conflicts.model_dump() == {"total": 1, "resolved": 1, "queued": 0}
    (s,) = engine.skills(AGENT)
    assert s.usage.total_invocations == 10


# --------------------------------------------------------------------------- knowledge


def know(eid: str, inst: str, conf: float = 0.7, content: str = "The API rate limit is 100 rpm",
         subject: str | None = "api rate limit", t: float = 0) -> ExperienceEvent:
    data: dict[str, Any] = {"content": content, "confidence": conf}
    if subject:
        data["subject"] = subject
    return ev(eid, "knowledge", data, instance=inst, t=t)


def test_knowledge_one_instance_pending_three_integrated(engine: MergeEngine) -> None:
    send(engine, know("k1", "i1"), know("k1b", "i1", conf=0.99, t=1), instance="i1")
    (item,) = engine.knowledge(AGENT)
    assert item.status == "pending"
    assert list(item.verifications) == ["i1"]  # a repeat updates, never adds
    assert item.confidence == 0.99
    assert engine.knowledge(AGENT, status="integrated") == []

    engine2_events = [know("k2", "i2", t=2), know("k3", "i3", t=3)]
    send(engine, know("k1c", "i1", conf=0.7, t=1.5))
    r = send(engine, *engine2_events, instance="i2")
    (item,) = engine.knowledge(AGENT, status="integrated")
    assert len(item.verifications) == 3
    assert item.confidence == pytest.approx(1 - 0.3**3)
    assert r.knowledge_verified == 2 and r.knowledge_integrated == 1
    assert item.integrated_at == T0 + timedelta(seconds=2)  # two instances: 0.91 >= 0.8
    assert engine.state(AGENT).stats.knowledge_acquired == 1


def test_knowledge_threshold_respected(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(knowledge_verification_threshold=0.95)
    send(engine, know("k1", "i1"), know("k2", "i2", t=1))
    assert engine.knowledge(AGENT)[0].status == "pending"  # 0.91 < 0.95
    send(engine, know("k3", "i3", t=2))
    assert engine.knowledge(AGENT)[0].status == "integrated"  # 0.973


def test_knowledge_content_conflict(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, know("k1", "i1"))
    r = send(engine, know("k2", "i2", content="The API rate limit is 500 rpm", t=1))
    assert r.conflicts.queued == 1
    (review,) = engine.reviews(AGENT)
    assert review.kind == "knowledge" and review.key == "subject:api rate limit"
    engine.decide_review(AGENT, review.review_id, accept=False)
    assert engine.knowledge(AGENT)[0].content == "The API rate limit is 100 rpm"
    assert engine.reviews(AGENT) == []
    assert engine.reviews(AGENT, status=None)[0].status == "rejected"


@pytest.mark.parametrize(
    ("strategy", "trust", "winner"),
    [
        ("latest_wins", {}, "The API rate limit is 500 rpm"),
        ("weighted_merge", {"i2": 0.1}, "The API rate limit is 100 rpm"),
        ("weighted_merge", {"i1": 0.1}, "The API rate limit is 500 rpm"),
    ],
)
def test_knowledge_conflict_strategies(
    make_engine: Callable[..., MergeEngine], strategy: str, trust: dict[str, float], winner: str
) -> None:
    engine = make_engine(conflict_resolution=strategy, instance_trust=trust)
    send(engine, know("k1", "i1"))
    r = send(engine, know("k2", "i2", content="The API rate limit is 500 rpm", t=1))
    assert r.conflicts.resolved == 1
    assert engine.knowledge(AGENT)[0].content == winner


# --------------------------------------------------------------------------- characteristics


def char(eid: str, inst: str, value: Any, conf: float = 0.7, t: float = 0) -> ExperienceEvent:
    return ev(eid, "characteristic", {"key": "verbosity", "value": value, "confidence": conf},
              instance=inst, t=t)


def test_characteristics_latest_wins(engine: MergeEngine) -> None:
    send(engine, char("c1", "i1", "low", t=5))
    r = send(engine, char("c2", "i2", "high", t=1))
    assert r.conflicts.resolved == 1
    assert engine.state(AGENT).characteristics["verbosity"].value == "low"
    send(engine, char("c3", "i2", "high", t=9))
    c = engine.state(AGENT).characteristics["verbosity"]
    assert (c.value, c.source_instance) == ("high", "i2")


def test_characteristics_weighted_merge_averages_numbers(
    make_engine: Callable[..., MergeEngine]
) -> None:
    engine = make_engine(conflict_resolution="weighted_merge", instance_trust={"i2": 3.0})
    send(engine, char("c1", "i1", 0.2, conf=0.5))
    send(engine, char("c2", "i2", 0.6, conf=0.5, t=1))
    c = engine.state(AGENT).characteristics["verbosity"]
    assert c.value == pytest.approx((0.2 * 0.5 + 0.6 * 1.5) / 2.0)


def test_characteristic_review_accept(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, char("c1", "i1", "low"))
    send(engine, char("c2", "i2", "high", t=1))
    assert engine.state(AGENT).characteristics["verbosity"].value == "low"
    (review,) = engine.reviews(AGENT)
    decided = engine.decide_review(AGENT, review.review_id, accept=True)
    assert decided.status == "accepted" and decided.decided_at is not None
    assert engine.state(AGENT).characteristics["verbosity"].value == "high"
    # Deciding again changes nothing; unknown reviews are a KeyError.
    assert engine.decide_review(AGENT, review.review_id, accept=False).status == "accepted"
    with pytest.raises(KeyError):
        engine.decide_review(AGENT, "rv-nope", accept=True)


# --------------------------------------------------------------------------- idempotency


def test_duplicate_events_and_units_change_nothing(engine: MergeEngine) -> None:
    events = [ev("e1", "memory", {"content": "Likes tea"}), skill("s1", "i1", 0.5, 3, 3),
              know("k1", "i1"), ev("x1", "interaction", {"summary": "hello"})]
    first = send(engine, *events)
    before = engine.state(AGENT)
    again = send(engine, *events)
    assert again.duplicate_event_ids == ["e1", "s1", "k1", "x1"]
    assert again.accepted_event_ids == [] and again.cursor == first.cursor
    batch = ExperienceBatch(batch_id="b1", instance_id="i1", timestamp_start=T0,
                            timestamp_end=T0, events=[ev("e2", "memory", {"content": "Dogs"})])
    r1 = engine.ingest_batch(AGENT, batch)
    r2 = engine.ingest_batch(AGENT, batch)
    assert not r1.duplicate and r2.duplicate
    assert r2.memories_added == r1.memories_added == 1
    after = engine.state(AGENT)
    assert after.stats.total_events == before.stats.total_events + 1
    assert after.stats.total_syncs == 2
    assert engine.state(AGENT, since=first.cursor).memories[0].content == "Dogs"


def test_state_since_cursor_returns_changes_only(engine: MergeEngine) -> None:
    c1 = send(engine, ev("e1", "memory", {"content": "Likes tea"}),
              ev("e2", "memory", {"content": "Owns a cat"})).cursor
    c2 = send(engine, ev("e3", "memory", {"content": "likes tea!"}, instance="i2")).cursor
    assert c2 == c1 + 1
    changed = engine.state(AGENT, since=c1)
    assert [m.content for m in changed.memories] == ["Likes tea"]
    assert engine.state(AGENT, since=c2).memories == []


def test_state_survives_restart(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    send(engine, ev("e1", "memory", {"content": "Likes tea"}), skill("s1", "i1", 0.5, 1, 1),
         know("k1", "i1"), char("c1", "i1", "low"))
    before = engine.state(AGENT)
    engine.close()
    again = make_engine()
    assert again.preload() == [AGENT]
    assert again.state(AGENT) == before
    assert send(again, ev("e1", "memory", {"content": "Likes tea"})).duplicate_event_ids == ["e1"]


# --------------------------------------------------------------------------- check-ins


def test_checkin_full_state_is_reconciled_idempotently(engine: MergeEngine) -> None:
    state = InstanceState(
        memories=[MemoryData(content="Prefers dark mode")],
        skills=[SkillData(name="SQL", proficiency=0.6,
                          usage=SkillUsageReport(invocations=4, successes=3))],
        knowledge=[KnowledgeData(content="Office closes at 6pm", subject="office hours")],
        characteristics={"tone": "formal"},
    )
    r1 = engine.ingest_checkin(AGENT, CheckIn(instance_id="i1", timestamp=T0, state=state,
                                              summary=InstanceSummary(last_sequence=42)),
                               IngestMeta(transport="https", backlog=3))
    assert (r1.memories_added, r1.skills_added, r1.knowledge_added,
            r1.characteristics_updated) == (1, 1, 1, 1)
    before = engine.state(AGENT)
    r2 = engine.ingest_checkin(AGENT, CheckIn(instance_id="i1", timestamp=T0 + timedelta(hours=1),
                                              state=state))
    assert r2.accepted_event_ids == [] and len(r2.duplicate_event_ids) == 4
    assert engine.state(AGENT) == before
    (status,) = engine.instances(AGENT)
    assert (status.protocol, status.transport, status.backlog, status.last_sequence) == (
        "check_in", "https", 3, 42)


def test_instance_status(engine: MergeEngine) -> None:
    send(engine, ev("e1", "memory", {"content": "a"}), meta=IngestMeta("streaming", "websocket", 7))
    (status,) = engine.instances(AGENT)
    assert status.total_events == 1 and status.backlog == 7 and status.transport == "websocket"
    assert status.lag_seconds is not None and status.lag_seconds > 0
    assert engine.agents() == [AGENT]


# --------------------------------------------------------------------------- observability


class Recorder:
    def __init__(self) -> None:
        self.events: list[ObservabilityEvent] = []

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        self.events.append(event)


def test_observability_events(
    make_engine: Callable[..., MergeEngine], register_plugin: Any
) -> None:
    rec = Recorder()
    register_plugin(rec, name="recorder")
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, ev("e1", "memory", {"content": "Likes tea"}), skill("s1", "i1", 0.5, 1, 1),
         know("k1", "i1"), char("c1", "i1", "low"))
    send(engine, char("c2", "i2", "high", t=1))
    engine.ingest_batch(AGENT, ExperienceBatch(instance_id="i1", timestamp_start=T0,
                                               timestamp_end=T0, events=[]))
    engine.ingest_checkin(AGENT, CheckIn(instance_id="i1"))
    (review,) = engine.reviews(AGENT)
    engine.decide_review(AGENT, review.review_id, accept=False)
    types = [e.type for e in rec.events]
    for expected in ("sync.event", "merge.memories", "merge.skills", "merge.knowledge",
                     "review.queued", "sync.batch", "sync.check_in", "review.decided"):
        assert expected in types
    assert all(e.agent_id == AGENT for e in rec.events)


def test_conflict_resolved_event(make_engine: Callable[..., MergeEngine], register_plugin: Any) -> None:
    rec = Recorder()
    register_plugin(rec, name="recorder")
    engine = make_engine()
    send(engine, char("c1", "i1", "low"), char("c2", "i2", "high", t=1))
    (resolved,) = [e for e in rec.events if e.type == "conflict.resolved"]
    assert resolved.data["kind"] == "characteristic"
    assert resolved.data["strategy"] == "latest_wins"


# --------------------------------------------------------------------------- replay


def test_replay_in_place_and_into_another_store(
    make_engine: Callable[..., MergeEngine], store_url: str, tmp_path: Path
) -> None:
    engine = make_engine(conflict_resolution="manual_review")
    send(engine, ev("e1", "memory", {"content": "Likes tea"}), skill("s1", "i1", 0.9, 2, 2),
         know("k1", "i1"), char("c1", "i1", "low"))
    send(engine, ev("e2", "memory", {"content": "likes tea"}, instance="i2"),
         skill("s2", "i2", 0.1, 4, 1, t=1), know("k2", "i2", t=1), char("c2", "i2", "high", t=1),
         instance="i2")
    reviews = engine.reviews(AGENT)
    assert len(reviews) == 2
    engine.decide_review(AGENT, reviews[0].review_id, accept=True)
    engine.decide_review(AGENT, reviews[1].review_id, accept=False)
    live = engine.state(AGENT)
    engine.close()

    same = replay(open_store(store_url), AGENT, MergeStrategyConfig(
        conflict_resolution="manual_review"))
    assert same == live
    other_url = f"sqlite:///{tmp_path}/other.db"
    copied = replay(open_store(store_url), AGENT,
                    MergeStrategyConfig(conflict_resolution="manual_review"), open_store(other_url))
    assert copied == live
    # Under another strategy the decisions no longer apply and the result differs.
    relaxed = replay(open_store(store_url), AGENT, MergeStrategyConfig(skill_aggregation="average"))
    assert relaxed.reviews == []
    assert relaxed.skills[0].proficiency == pytest.approx(0.5)
    with pytest.raises(ValueError, match="already holds"):
        replay(open_store(store_url), AGENT, MergeStrategyConfig(), open_store(other_url))
    reopened = make_engine()
    assert reopened.state(AGENT) == relaxed


# --------------------------------------------------------------------------- bounded growth


def test_long_skill_histories_are_compacted_exactly(
    make_engine: Callable[..., MergeEngine], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experience_sync.hub.merge import skills as skill_accumulator

    monkeypatch.setattr(skill_accumulator, "MAX_REPORTS", 6)
    engine = make_engine(skill_aggregation="weighted")
    for n in range(1, 31):
        inst = f"i{n % 3}"
        send(engine, skill(f"s{n}", inst, (n % 10) / 10, n, n // 2, t=n), instance=inst)
    # a report older than everything kept, and a stale one: usage stays exact
    send(engine, skill("late", "i9", 0.5, 7, 7, t=0.5), instance="i9")
    send(engine, skill("stale", "i1", 0.9, 1, 1, t=0.1))
    (s,) = engine.skills(AGENT)
    assert s.usage.total_invocations == 30 + 29 + 28 + 7
    assert s.per_instance["i1"].event_id == "s28"
    live = engine.state(AGENT)
    engine.close()
    assert make_engine(skill_aggregation="weighted").state(AGENT) == live
    assert replay(open_store(store_url), AGENT, MergeStrategyConfig(skill_aggregation="weighted")) == live


def test_memory_source_events_are_bounded(engine: MergeEngine) -> None:
    from experience_sync.hub.merge.memory import MAX_SOURCE_EVENTS

    n = MAX_SOURCE_EVENTS + 5
    send(engine, *[ev(f"e{i}", "memory", {"content": "Likes tea"}) for i in range(n)])
    (m,) = engine.state(AGENT).memories
    assert m.access_count == n
    assert len(m.source_events) == MAX_SOURCE_EVENTS and m.source_events[-1] == f"e{n - 1}"


def test_repeated_knowledge_reports_are_compacted(
    make_engine: Callable[..., MergeEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from experience_sync.hub.merge import knowledge as knowledge_integrator

    monkeypatch.setattr(knowledge_integrator, "MAX_REPORTS", 4)
    engine = make_engine()
    send(engine, know("k1", "i1"), know("k2", "i2", t=1))
    (item,) = engine.knowledge(AGENT, status="integrated")
    for n in range(10):  # i1 keeps reporting, finally with low confidence
        send(engine, know(f"r{n}", "i1", conf=0.1, t=2 + n))
    (item,) = engine.knowledge(AGENT)
    assert item.status == "integrated" and item.integrated_at == T0 + timedelta(seconds=1)
    assert item.verifications["i1"].event_id == "r9"
    assert item.confidence == pytest.approx(1 - 0.9 * 0.3)
    live = engine.state(AGENT)
    engine.close()
    assert make_engine().state(AGENT) == live


REPORT = (
    "The quarterly report for the northern region is due at the end of the month "
    "and should include revenue"
)


@pytest.mark.parametrize("similarity", ["jaccard", "embedding"])
def test_batched_matching_sees_stored_and_same_request_memories(
    make_engine: Callable[..., MergeEngine], similarity: str
) -> None:
    engine = make_engine(similarity_method=similarity)
    send(engine, ev("s1", "memory", {"content": "The user prefers short answers in the morning"}))
    batch = [ev(f"n{i}", "memory", {"content": distinct(i)}) for i in range(10)]
    batch[4] = ev("dup-stored", "memory",
                  {"content": "In the morning the user prefers short answers"})
    batch[2] = ev("n2", "memory", {"content": REPORT})
    batch[7] = ev("dup-same", "memory", {"content": REPORT.replace(" and ", " and it ")})
    batch[8] = ev("exact-same", "memory", {"content": distinct(3).upper()})
    r = send(engine, *batch)
    assert (r.memories_added, r.memories_merged) == (7, 3)
    merged = {m.content: m.source_events for m in engine.state(AGENT).memories}
    assert merged["The user prefers short answers in the morning"] == ["s1", "dup-stored"]
    assert merged[REPORT] == ["n2", "dup-same"]
    assert merged[distinct(3)] == ["n3", "exact-same"]
