from __future__ import annotations

import pytest
from pydantic import ValidationError

from experience_sync.models import ExperienceEvent, MemoryData, SkillData, json_schema


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
