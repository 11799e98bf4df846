"""The data model, which is also the wire format."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from experience_sync.models import (
    SCHEMA_VERSION,
    WIRE_MODELS,
    AgentState,
    CharacteristicData,
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    ExperienceEvent,
    InstanceState,
    InstanceSummary,
    InteractionData,
    KnowledgeData,
    KnowledgeItem,
    LearningCurvePoint,
    Memory,
    MemoryData,
    MergeResult,
    Skill,
    SkillData,
    SkillUsage,
    json_schema,
)


def test_event_data_is_validated_by_event_type() -> None:
    ev = ExperienceEvent.model_validate(
        {
            "source_instance": "i1",
            "event_type": "memory",
            "data": {"content": "User prefers concise answers", "tags": ["style"]},
        }
    )
    assert isinstance(ev.data, MemoryData)
    assert ev.memory.tags == ["style"]


def test_memory_without_content_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        ExperienceEvent.model_validate(
            {"source_instance": "i1", "event_type": "memory", "data": {"tags": []}}
        )
    assert "content" in str(info.value)


def test_skill_successes_cannot_exceed_invocations() -> None:
    with pytest.raises(ValidationError):
        SkillData.model_validate({"name": "search", "usage": {"invocations": 1, "successes": 2}})


def test_priority_must_be_within_unit_interval() -> None:
    with pytest.raises(ValidationError) as info:
        ExperienceEvent(
            source_instance="i1", event_type="memory", priority=1.5, data=MemoryData(content="x")
        )
    assert "priority" in str(info.value)


def test_json_schema_covers_wire_models() -> None:
    schema = json_schema()
    assert {"ExperienceEvent", "ExperienceBatch", "CheckIn", "MergeResult"} <= set(
        schema["models"]
    )
    assert schema["schema_version"] == "1.0"


# --------------------------------------------------------------------------- more of the wire format

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _event(event_type: str, data: dict[str, Any], **extra: Any) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {"source_instance": "i1", "event_type": event_type, "data": data, **extra}
    )


@pytest.mark.parametrize(
    ("event_type", "data", "model"),
    [
        ("memory", {"content": "c", "importance": 0.9, "embedding": [0.1, 0.2]}, MemoryData),
        ("skill", {"name": "search", "proficiency": 0.7, "usage": {"invocations": 3}}, SkillData),
        ("knowledge", {"content": "Paris is in France", "subject": "paris"}, KnowledgeData),
        ("characteristic", {"key": "tone", "value": "dry"}, CharacteristicData),
        ("interaction", {"summary": "hi", "channel": "slack"}, InteractionData),
    ],
)
def test_every_event_type_has_its_data_model(
    event_type: str, data: dict[str, Any], model: type
) -> None:
    event = _event(event_type, data)
    assert isinstance(event.data, model)
    again = ExperienceEvent.model_validate_json(event.model_dump_json())
    assert again == event and isinstance(again.data, model)


def test_interaction_keeps_extra_fields_but_others_do_not() -> None:
    assert _event("interaction", {"summary": "s", "channel": "x"}).data.model_dump()["channel"] == "x"
    with pytest.raises(ValidationError) as info:
        _event("memory", {"content": "c", "mood": "happy"})
    assert "data.mood" in str(info.value)
    with pytest.raises(ValidationError):
        _event("memory", {"content": "c"}, colour="blue")


@pytest.mark.parametrize(
    ("event_type", "data", "path"),
    [
        ("skill", {"proficiency": 0.5}, "data.name"),
        ("skill", {"name": "s", "proficiency": 1.2}, "data.proficiency"),
        ("knowledge", {"content": "k", "confidence": -1}, "data.confidence"),
        ("memory", {"content": ""}, "data.content"),
        ("characteristic", {"value": 1}, "data.key"),
    ],
)
def test_data_errors_name_the_data_field(event_type: str, data: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as info:
        _event(event_type, data)
    assert path in str(info.value)


def test_data_errors_inside_requests_carry_the_full_path() -> None:
    with pytest.raises(ValidationError) as info:
        EventsRequest.model_validate(
            {"instance_id": "i1", "events": [{"source_instance": "i1", "event_type": "memory",
                                              "data": {"tags": []}}]}
        )
    assert "events.0.data.content" in str(info.value)


def test_data_model_must_match_event_type() -> None:
    with pytest.raises(ValidationError, match="does not match event_type 'skill'"):
        ExperienceEvent(source_instance="i1", event_type="skill", data=MemoryData(content="x"))


def test_unknown_event_type_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        _event("dream", {"content": "x"})
    assert "event_type" in str(info.value)


def test_event_defaults() -> None:
    a = _event("memory", {"content": "x"})
    b = _event("memory", {"content": "x"})
    assert a.event_id != b.event_id and len(a.event_id) == 32
    assert a.timestamp.tzinfo is not None
    assert (a.schema_version, a.priority, a.sequence, a.lamport) == (SCHEMA_VERSION, 0.5, 0, 0)
    assert a.context.environment == {}


def test_batch_and_checkin_round_trip() -> None:
    events = [_event("memory", {"content": f"m{i}"}, sequence=i, lamport=i) for i in range(3)]
    batch = ExperienceBatch(
        instance_id="i1",
        agent_id="a1",
        timestamp_start=T0,
        timestamp_end=T0 + timedelta(hours=1),
        events=events,
        compression="zstd",
    )
    assert ExperienceBatch.model_validate_json(batch.model_dump_json()) == batch
    with pytest.raises(ValidationError) as info:
        ExperienceBatch.model_validate({**batch.model_dump(), "compression": "rar"})
    assert "compression" in str(info.value)

    full = CheckIn(
        instance_id="i1",
        uptime_seconds=3600,
        state=InstanceState(
            memories=[MemoryData(content="m")],
            skills=[SkillData(name="s")],
            knowledge=[KnowledgeData(content="k")],
            characteristics={"tone": "dry"},
        ),
    )
    summary = CheckIn(instance_id="i1", summary=InstanceSummary(memories=4, last_sequence=9))
    for checkin in (full, summary):
        assert CheckIn.model_validate_json(checkin.model_dump_json()) == checkin
    assert full.checkin_id != summary.checkin_id
    with pytest.raises(ValidationError):
        CheckIn(instance_id="i1", uptime_seconds=-1)


def test_merge_result_counts_and_accumulation() -> None:
    fields = set(MergeResult.model_fields)
    assert {
        "memories_added", "memories_merged", "skills_added", "skills_updated",
        "knowledge_added", "knowledge_verified", "knowledge_integrated",
        "accepted_event_ids", "duplicate_event_ids", "conflicts", "schema_version",
    } <= fields
    a = MergeResult(events_received=2, memories_added=1, accepted_event_ids=["e1"], cursor=3)
    a.conflicts.total = 1
    b = MergeResult(events_received=1, memories_merged=1, duplicate_event_ids=["e0"], cursor=5)
    b.conflicts.queued = 1
    a.add(b)
    assert (a.events_received, a.memories_added, a.memories_merged, a.cursor) == (3, 1, 1, 5)
    assert (a.accepted_event_ids, a.duplicate_event_ids) == (["e1"], ["e0"])
    assert (a.conflicts.total, a.conflicts.queued) == (1, 1)


def test_skill_has_every_spec_field() -> None:
    skill = Skill(
        skill_id="s1",
        name="search",
        category="tools",
        proficiency=0.8,
        acquired=T0,
        source_instances=["i1", "i2"],
        learning_curve=[LearningCurvePoint(timestamp=T0, proficiency=0.8, event="e1")],
        usage=SkillUsage(total_invocations=10, success_rate=0.9, contexts=["web"], last_used=T0),
    )
    dumped = skill.model_dump(mode="json")
    assert {"skill_id", "name", "category", "proficiency", "acquired", "source_instances",
            "learning_curve", "usage"} <= set(dumped)
    assert set(dumped["learning_curve"][0]) == {"timestamp", "proficiency", "event"}
    assert {"total_invocations", "success_rate", "contexts", "last_used"} <= set(dumped["usage"])
    with pytest.raises(ValidationError):
        SkillUsage(success_rate=1.5)


def test_agent_state_round_trip() -> None:
    state = AgentState(
        agent_id="a1",
        cursor=7,
        memories=[Memory(memory_id="m1", content="c", normalized_hash="h", created_at=T0,
                         updated_at=T0)],
        skills=[Skill(skill_id="s1", name="s", acquired=T0)],
        knowledge=[KnowledgeItem(knowledge_id="k1", key="k", content="c", first_seen=T0)],
    )
    assert AgentState.model_validate_json(state.model_dump_json()) == state
    assert state.schema_version == SCHEMA_VERSION


def _samples() -> dict[str, Any]:
    event = _event("skill", {"name": "s", "usage": {"invocations": 2, "successes": 1}})
    return {
        "ExperienceEvent": event,
        "EventsRequest": EventsRequest(instance_id="i1", events=[event]),
        "ExperienceBatch": ExperienceBatch(
            instance_id="i1", timestamp_start=T0, timestamp_end=T0, events=[event]
        ),
        "CheckIn": CheckIn(instance_id="i1", summary=InstanceSummary()),
        "MergeResult": MergeResult(accepted_event_ids=[event.event_id]),
        "AgentState": AgentState(agent_id="a1", skills=[Skill(skill_id="s", name="s",
                                                               acquired=T0)]),
    }


@pytest.mark.parametrize("name", sorted(WIRE_MODELS))
def test_json_schema_is_valid_and_accepts_what_we_send(name: str) -> None:
    schema = json_schema()["models"][name]
    jsonschema.Draft202012Validator.check_schema(schema)
    sample = _samples().get(name)
    if sample is not None:
        jsonschema.validate(sample.model_dump(mode="json"), schema)


def test_json_schema_rejects_what_we_reject() -> None:
    schema = json_schema()["models"]["ExperienceEvent"]
    bad = _event("memory", {"content": "x"}).model_dump(mode="json")
    bad["priority"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@settings(max_examples=60, deadline=None)
@given(
    content=st.text(min_size=1, max_size=200),
    priority=st.floats(min_value=0, max_value=1),
    tags=st.lists(st.text(max_size=20), max_size=5),
    lamport=st.integers(min_value=0, max_value=2**53),
)
def test_memory_events_survive_the_wire(
    content: str, priority: float, tags: list[str], lamport: int
) -> None:
    event = ExperienceEvent(
        source_instance="i1",
        event_type="memory",
        priority=priority,
        lamport=lamport,
        data=MemoryData(content=content, tags=tags),
    )
    assert ExperienceEvent.model_validate_json(event.model_dump_json()) == event


def test_merge_counts_name_every_counter_of_merge_result() -> None:
    from experience_sync.models import MERGE_COUNTS, MergeResult

    counters = [n for n, f in MergeResult.model_fields.items() if f.annotation in (int, "int")]
    assert set(MERGE_COUNTS) == set(counters) - {"cursor"}
