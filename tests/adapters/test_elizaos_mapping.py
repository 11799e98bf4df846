"""The ElizaOS event mapping on its own: which experience each event becomes,
with what priority, and what never leaves (secrets, unknown events)."""

from __future__ import annotations

from typing import Any

import pytest
from experience_sync_elizaos import MappingOptions, map_event, redact_secrets
from experience_sync_elizaos.mapping import (
    InteractionRecord,
    KnowledgeRecord,
    MemoryRecord,
    SkillRecord,
)

AGENT = {"id": "a1", "name": "Ada"}


def one(event: dict[str, Any], **opts: Any) -> Any:
    records = map_event({"id": "x", **event}, AGENT, MappingOptions(**opts))
    assert len(records) == 1, records
    return records[0]


def test_action_outcomes_are_skill_uses_with_priorities() -> None:
    ok = one({"type": "ACTION_COMPLETED", "action": "LOOKUP", "success": True, "source": "tg"})
    assert isinstance(ok, SkillRecord) and ok.success and ok.priority == 0.6
    assert ok.context.environment == {"framework": "elizaos", "eliza_agent_id": "a1",
                                      "eliza_agent_name": "Ada", "source": "tg"}
    failed = one({"type": "ACTION_COMPLETED", "action": "LOOKUP", "status": "failed"})
    assert isinstance(failed, SkillRecord) and not failed.success and failed.priority == 0.7
    assert map_event({"id": "x", "type": "ACTION_COMPLETED"}) == []  # no action name


def test_evaluator_findings() -> None:
    records = map_event({"id": "x", "type": "EVALUATOR_COMPLETED", "evaluator": "R",
                         "facts": ["a", "", 3, "b"], "summary": "went well"})
    assert [type(r) for r in records] == [KnowledgeRecord, KnowledgeRecord, MemoryRecord]
    bare = one({"type": "EVALUATOR_COMPLETED", "evaluator": "R", "error": "boom"})
    assert isinstance(bare, SkillRecord) and not bare.success
    assert bare.category == "elizaos-evaluator"


def test_runs_and_messages_are_interactions() -> None:
    run = one({"type": "RUN_ENDED", "runId": "r1", "roomId": "room", "status": "timeout",
               "durationMs": 30000})
    assert isinstance(run, InteractionRecord) and run.outcome == "timeout" and run.priority == 0.6
    assert run.context.task_id == "r1" and run.context.conversation_id == "room"
    msg = one({"type": "MESSAGE_SENT", "textLength": 5, "actions": ["REPLY"]})
    assert isinstance(msg, InteractionRecord)
    assert msg.extra == {"direction": "out", "text_length": 5, "actions": ["REPLY"]}
    assert msg.priority == 0.3


def test_memory_tables() -> None:
    fact = one({"type": "MEMORY_CREATED", "table": "facts", "text": "sky is blue"})
    assert isinstance(fact, KnowledgeRecord)
    mem = one({"type": "MEMORY_CREATED", "table": "memories", "text": "t", "tags": ["x"]})
    assert isinstance(mem, MemoryRecord) and mem.tags == ["elizaos", "memories", "x"]
    assert map_event({"id": "x", "type": "MEMORY_CREATED", "table": "messages", "text": "t"}) == []
    assert map_event({"id": "x", "type": "MEMORY_CREATED", "table": "memories"}) == []


def test_unknown_events_map_to_nothing() -> None:
    assert map_event({"id": "x", "type": "MODEL_USED", "prompt": "secret prompt"}) == []


@pytest.mark.parametrize("secret", [
    "sk-proj-abcdefghijklmnop1234",
    "ghp_abcdefghijklmnopqrstuvwxyz0123",
    "xoxb-1234567890-abcdef",
    "AKIAABCDEFGHIJKLMNOP",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "Bearer abcdefghijklmnop",
])
def test_redact_secrets(secret: str) -> None:
    assert redact_secrets(f"use {secret} now") == "use [redacted] now"


def test_redact_keeps_the_key_name_and_ordinary_text() -> None:
    assert redact_secrets("password: hunter22 ok") == "password: [redacted] ok"
    assert redact_secrets("API_KEY=abc123def456") == "API_KEY=[redacted]"
    text = "The token ring network uses a skeleton key; ask-me-anything sessions"
    assert redact_secrets(text) == text
