"""How CrewAI events become experience events. Imports nothing from CrewAI.

The table is what the README, ``docs/adapters.md`` and ``experience-sync
crewai-events`` show; :mod:`experience_sync_crewai.listener` implements it.
"""

from __future__ import annotations

import re

# Shared with the other adapters; still importable from here for code written
# against earlier versions of this module.
from experience_sync.client.recording import SuccessRates as SuccessRates
from experience_sync.client.recording import clip as clip
from experience_sync.client.recording import fit_kwargs as fit_kwargs

#: Default priority of each kind of recorded experience. Failures rank above
#: successes: they are what other instances most need to learn from.
DEFAULT_PRIORITIES: dict[str, float] = {
    "task_memory": 0.6,
    "task_failed": 0.7,
    "agent_done": 0.5,
    "agent_error": 0.7,
    "tool_success": 0.5,
    "tool_failure": 0.7,
    "memory_save": 0.6,
    "knowledge": 0.5,
}

#: ``(CrewAI event, experience event, what is recorded, priority key)``.
EVENT_MAP: list[tuple[str, str, str, str]] = [
    (
        "TaskCompletedEvent",
        "memory",
        "'<agent role> completed <task name>: <output>' (output clipped to max_chars; "
        "tags crewai, task, role)",
        "task_memory",
    ),
    (
        "TaskFailedEvent",
        "interaction",
        "outcome 'failed', the exception class name (never its message)",
        "task_failed",
    ),
    (
        "AgentExecutionCompletedEvent",
        "interaction",
        "outcome 'completed', tools used, tool failures, duration",
        "agent_done",
    ),
    (
        "AgentExecutionErrorEvent",
        "interaction",
        "outcome 'error', tools used, tool failures",
        "agent_error",
    ),
    (
        "ToolUsageFinishedEvent",
        "skill",
        "usage of the tool as a skill (category 'tool'); success unless the tool "
        "reported a failure; proficiency = the tool's success rate so far",
        "tool_success",
    ),
    (
        "ToolUsageErrorEvent",
        "skill",
        "usage of the tool as a skill, failure",
        "tool_failure",
    ),
    (
        "MemorySaveCompletedEvent",
        "memory",
        "the saved value (clipped), tags from its categories; saves made by "
        "seed_crew_memory are skipped",
        "memory_save",
    ),
    (
        "KnowledgeRetrievalCompletedEvent",
        "knowledge",
        "the retrieved knowledge (clipped), evidence naming the agent role; the "
        "search query is not kept",
        "knowledge",
    ),
]

#: Not recorded, on purpose: LLM calls and stream chunks (they carry prompts
#: and raw completions), tool arguments, task descriptions (interpolated user
#: inputs), knowledge search queries, exception messages.
LEFT_OUT = (
    "LLM call events and stream chunks (prompts, raw completions)",
    "tool arguments and tool outputs",
    "task descriptions (they carry interpolated inputs) unless include_task_descriptions=True",
    "knowledge search queries",
    "exception messages (only the exception class name is kept)",
)

#: Metadata key marking memories written into a crew by seed_crew_memory, so
#: their save events are not sent back to the hub.
SEED_MARK = "experience_sync_seed"

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug(text: str, default: str = "crew") -> str:
    """``"Research Crew #2"`` -> ``"research-crew-2"``: safe in an instance id."""
    out = _SLUG_RE.sub("-", text.lower()).strip("-")
    return out[:60] or default
