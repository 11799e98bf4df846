"""How CrewAI events become experience events. Imports nothing from CrewAI.

The table is what the README, ``docs/adapters.md`` and ``experience-sync
crewai-events`` show; :mod:`experience_sync_crewai.listener` implements it.
"""

from __future__ import annotations

import re

# Shared with the other adapters; still importable from here for code written
# against earlier versions of this module.
from experience_sync.api import SuccessRates as SuccessRates
from experience_sync.api import clip as clip
from experience_sync.api import fit_kwargs as fit_kwargs

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
        "one use of the tool as a skill (category 'tool'); success unless the tool "
        "reported a failure (a call CrewAI retried after an error counts once); "
        "proficiency = the tool's success rate so far",
        "tool_success",
    ),
    (
        "ToolUsageErrorEvent",
        "skill",
        "one failed use of the tool, once CrewAI gives up on the call (the attempts "
        "it retries are not counted; a retry that succeeds is a success)",
        "tool_failure",
    ),
    (
        "MemorySaveCompletedEvent",
        "memory",
        "each memory the save stored (clipped; read back from the Memory, also for "
        "remember_many batches), tags from its categories; private memories and "
        "those seeded by seed_crew_memory are skipped",
        "memory_save",
    ),
    (
        "KnowledgeRetrievalCompletedEvent",
        "knowledge",
        "opt-in (record_knowledge=True): the retrieved text (clipped), evidence "
        "naming the agent role; the search query is not kept",
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
    "retrieved knowledge documents unless record_knowledge=True (retrieved is not learned)",
    "knowledge search queries",
    "private memories (Memory.remember(..., private=True))",
    "exception messages (only the exception class name is kept)",
)

#: The ``source`` of the memory records seed_crew_memory writes into a crew's
#: ``Memory``: the listener does not send them back to the hub. (CrewAI never
#: shows a record's source to the model, unlike its metadata.)
SEED_SOURCE = "experience-sync"
#: Metadata key that marked seeded memories before SEED_SOURCE; memories
#: carrying it are still not sent back.
SEED_MARK = "experience_sync_seed"

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug(text: str, default: str = "crew") -> str:
    """``"Research Crew #2"`` -> ``"research-crew-2"``: safe in an instance id."""
    out = _SLUG_RE.sub("-", text.lower()).strip("-")
    return out[:60] or default
