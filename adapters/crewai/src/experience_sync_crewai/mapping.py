"""How CrewAI events become experience events. Imports nothing from CrewAI.

The table is what the README, ``docs/adapters.md`` and ``experience-sync
crewai-events`` show; :mod:`experience_sync_crewai.listener` implements it.
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Any

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


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "\u2026"


_SIGNATURES: dict[Any, tuple[frozenset[str], bool]] = {}
_NOT_EXTRA = frozenset({"priority", "context"})


def fit_kwargs(func: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without the options ``func`` does not take.

    Lets the listener pass a priority or a context where the manager method
    accepts one, and stay compatible with managers whose methods do not; for
    methods with ``**extra`` (``record_interaction``), ``priority`` and
    ``context`` are not passed as extra fields.
    """
    key = getattr(func, "__func__", func)
    sig = _SIGNATURES.get(key)
    if sig is None:
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return kwargs
        names = frozenset(
            n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        sig = _SIGNATURES[key] = (names, var_kw)
    names, var_kw = sig
    return {k: v for k, v in kwargs.items() if k in names or (var_kw and k not in _NOT_EXTRA)}


class SuccessRates:
    """Thread-safe success counts per ``(instance, skill)``.

    A tool's observed success rate is the most direct measure of how well the
    instance uses it, so it is what the adapter reports as the proficiency.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def observe(self, instance_id: str, skill: str, success: bool) -> float:
        """Count one use; returns the success rate including it."""
        key = (instance_id, skill.casefold())
        with self._lock:
            uses, successes = self._counts.get(key, (0, 0))
            uses, successes = uses + 1, successes + (1 if success else 0)
            self._counts[key] = (uses, successes)
        return successes / uses
