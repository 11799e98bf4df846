"""The CrewAI event-bus listener that records a crew's experiences.

Enable it with one line before ``crew.kickoff()``::

    listener = ExperienceSyncListener(manager, instance_id="research-crew-1")

Keep a reference to the listener (the bus holds its handlers, and
:meth:`ExperienceSyncListener.close` removes them). CrewAI runs synchronous
handlers in a thread pool, so every handler here is thread-safe, takes exactly
``(source, event)`` and only appends to the manager's local outbox: nothing
waits on the network and nothing raises into the crew.

The mapping from CrewAI events to experience events is
:data:`experience_sync_crewai.mapping.EVENT_MAP`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crewai.events import (
    AgentExecutionCompletedEvent,
    AgentExecutionErrorEvent,
    AgentExecutionStartedEvent,
    BaseEventListener,
    CrewKickoffStartedEvent,
    KnowledgeRetrievalCompletedEvent,
    MemorySaveCompletedEvent,
    MemorySaveStartedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    ToolUsageErrorEvent,
    ToolUsageFinishedEvent,
)
from crewai.events.event_bus import CrewAIEventsBus

from experience_sync.api import NotInitializedError, SuccessRates, clip, fit_kwargs
from experience_sync_crewai.mapping import DEFAULT_PRIORITIES, SEED_MARK, SEED_SOURCE, slug
from experience_sync_crewai.memory_saves import is_batch_summary, records_of_save
from experience_sync_crewai.recall import SERVED

log = logging.getLogger("experience_sync_crewai")

InstanceResolver = Callable[[Any, Any], str | None]

_KNOWLEDGE_PREFIX = "Additional Information:"
#: Memory record ids already recorded, kept per listener (bounded).
_SEEN_LIMIT = 10_000


@dataclass
class _Execution:
    started: float
    tools: list[str] = field(default_factory=list)
    failures: int = 0


class ExperienceSyncListener(BaseEventListener):
    """Records what CrewAI crews do through an ``ExperienceSyncManager``.

    That is: task completions, agent executions, tool use, memory saves and
    knowledge retrievals.

    :param manager: the ``ExperienceSyncManager`` to record through.
    :param instance_id: the instance to record for. When omitted it is taken
        from the crew: ``crewai-<crew name>`` (``-<agent role>`` appended with
        ``per_agent=True``); such derived instances are initialised on first
        use with ``agent_id`` and ``sync_options``.
    :param agent_id: the source agent derived instances sync to.
    :param sync_options: keyword arguments for ``manager.initialize_sync`` of
        derived instances (``endpoint``, ``protocol``, ``config``, ...), or a
        function of the instance id returning them (hub tokens are bound to
        one instance, so each derived instance may need its own config).
    :param per_agent: derive one instance per agent role rather than per crew.
    :param resolve_instance: ``f(source, event) -> instance id or None``, to
        choose the instance yourself (``None`` falls back to the rules above).
    :param include_outputs: put task outputs in task memories (else only who
        completed which task).
    :param include_task_descriptions: name a task without a ``name`` by its
        description (which carries interpolated inputs); else it is "a task".
    :param record_tasks, record_agents, record_tools, record_memory_saves: switch
        each part of the mapping off.
    :param record_knowledge: also record what CrewAI's knowledge retrieval put
        in a prompt, as knowledge. Off by default: a retrieved document is
        what the crew read, not something it learned, and the documents are
        already in the knowledge store they came from. What
        :class:`~experience_sync_crewai.recall.FleetKnowledge` recalled is never
        recorded.
    :param max_chars: longest text recorded from an output, memory or retrieval.
    :param tags: tags added to every memory.
    :param priorities: overrides of :data:`~experience_sync_crewai.mapping.DEFAULT_PRIORITIES`.
    """

    def __init__(
        self,
        manager: Any,
        instance_id: str | None = None,
        *,
        agent_id: str | None = None,
        sync_options: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
        per_agent: bool = False,
        resolve_instance: InstanceResolver | None = None,
        include_outputs: bool = True,
        include_task_descriptions: bool = False,
        record_tasks: bool = True,
        record_agents: bool = True,
        record_tools: bool = True,
        record_memory_saves: bool = True,
        record_knowledge: bool = False,
        max_chars: int = 2000,
        tags: Sequence[str] = ("crewai",),
        priorities: Mapping[str, float] | None = None,
    ) -> None:
        self.manager = manager
        self.instance_id = instance_id
        self.agent_id = agent_id
        self.sync_options = sync_options
        self.per_agent = per_agent
        self.resolve_instance = resolve_instance
        self.include_outputs = include_outputs
        self.include_task_descriptions = include_task_descriptions
        self.record_tasks = record_tasks
        self.record_agents = record_agents
        self.record_tools = record_tools
        self.record_memory_saves = record_memory_saves
        self.record_knowledge = record_knowledge
        self.max_chars = max_chars
        self.tags = list(tags)
        self.priorities = {**DEFAULT_PRIORITIES, **(priorities or {})}
        #: How many experiences were handed to the manager / failed to be.
        self.recorded = 0
        self.errors = 0
        #: Each tool's success rate so far, reported as the skill's proficiency.
        self.skill_rates = SuccessRates()
        self._lock = threading.Lock()
        self._ready: set[str] = set()
        self._unavailable: set[str] = set()
        self._crew_name: str | None = None
        self._executions: dict[tuple[str, str], _Execution] = {}
        self._seen_records: dict[str, None] = {}  # insertion-ordered: oldest dropped first
        # When each Memory's saves started, oldest first (a Memory saves one at a time).
        self._save_starts: dict[int, deque[datetime]] = {}
        self._handlers: list[tuple[type[Any], Callable[[Any, Any], None]]] = []
        self._bus: CrewAIEventsBus | None = None
        super().__init__()  # registers the handlers (setup_listeners)

    # ------------------------------------------------------------------ wiring

    def setup_listeners(self, crewai_event_bus: CrewAIEventsBus) -> None:
        """Register one handler per mapped event class (dispatch is by exact class)."""
        self._bus = crewai_event_bus
        handlers: list[tuple[type[Any], Callable[[Any, Any], None]]] = [
            (CrewKickoffStartedEvent, self._on_kickoff),
            (AgentExecutionStartedEvent, self._on_agent_started),
            (AgentExecutionCompletedEvent, self._on_agent_completed),
            (AgentExecutionErrorEvent, self._on_agent_error),
            (TaskCompletedEvent, self._on_task_completed),
            (TaskFailedEvent, self._on_task_failed),
            (ToolUsageFinishedEvent, self._on_tool_finished),
            (ToolUsageErrorEvent, self._on_tool_error),
            (MemorySaveStartedEvent, self._on_memory_save_started),
            (MemorySaveCompletedEvent, self._on_memory_saved),
            (KnowledgeRetrievalCompletedEvent, self._on_knowledge),
        ]
        for event_class, handler in handlers:
            crewai_event_bus.on(event_class)(handler)
        self._handlers = handlers

    def close(self) -> None:
        """Stop listening: remove this listener's handlers from the bus."""
        bus = self._bus
        if bus is None:
            return
        for event_class, handler in self._handlers:
            bus.off(event_class, handler)
        self._handlers = []

    def __enter__(self) -> ExperienceSyncListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _instance_for(self, source: Any, event: Any, role: str | None) -> str | None:
        if self.resolve_instance is not None:
            chosen = self.resolve_instance(source, event)
            if chosen:
                return self._ensure(chosen, derived=chosen != self.instance_id)
        if self.instance_id:
            return self.instance_id
        crew = _crew_of(source, event)
        name = getattr(crew, "name", None) if crew is not None else None
        name = name or self._crew_name or "crew"
        iid = f"crewai-{slug(str(name))}"
        if self.per_agent and role:
            iid += f"-{slug(role, 'agent')}"
        return self._ensure(iid, derived=True)

    def _ensure(self, instance_id: str, *, derived: bool) -> str | None:
        if instance_id in self._ready:
            return instance_id
        with self._lock:
            if instance_id in self._ready:
                return instance_id
            try:
                self.manager.status(instance_id)
            except NotInitializedError:
                if not derived or not self.agent_id:
                    if instance_id not in self._unavailable:  # say it once, not per event
                        self._unavailable.add(instance_id)
                        log.warning(
                            "experience-sync: instance %r is not initialised and no agent_id "
                            "was given to initialise it; its CrewAI events are not recorded",
                            instance_id,
                        )
                    return None
                options = self.sync_options
                if callable(options):
                    options = options(instance_id)
                self.manager.initialize_sync(
                    instance_id, agent_id=self.agent_id, **dict(options or {})
                )
            self._ready.add(instance_id)
            return instance_id

    def _record(self, source: Any, event: Any, role: str | None, method: str, *args: Any,
                **kwargs: Any) -> None:
        # Runs on the bus's worker threads: never raise into CrewAI.
        try:
            instance_id = self._instance_for(source, event, role)
            if instance_id is None:
                return
            if method == "record_skill_use":
                kwargs["proficiency"] = self.skill_rates.observe(
                    instance_id, args[0], kwargs["success"]
                )
            func = getattr(self.manager, method)
            func(instance_id, *args, **fit_kwargs(func, kwargs))
        except Exception:
            with self._lock:
                self.errors += 1
            log.warning("experience-sync: recording %s failed", type(event).__name__,
                        exc_info=True)
        else:
            with self._lock:
                self.recorded += 1

    def _task_label(self, task: Any) -> str:
        name = getattr(task, "name", None) if task is not None else None
        if name:
            return f'task "{clip(str(name), 200)}"'
        description = getattr(task, "description", None) if task is not None else None
        if self.include_task_descriptions and description:
            return f'task "{clip(str(description), 200)}"'
        # Not the task's id: the label is in the memory's text, which recall
        # shows other instances' models, and an id means nothing there (it
        # stays in the memory's context as task_id).
        return "a task"

    @staticmethod
    def _exec_key(agent: Any, task: Any) -> tuple[str, str]:
        return (str(getattr(agent, "id", "")), str(getattr(task, "id", "")))

    # ------------------------------------------------------------------ handlers

    def _on_kickoff(self, source: Any, event: Any) -> None:
        crew_name = getattr(event, "crew_name", None)
        if crew_name:
            self._crew_name = str(crew_name)

    def _on_agent_started(self, source: Any, event: Any) -> None:
        key = self._exec_key(event.agent, event.task)
        with self._lock:
            self._executions[key] = _Execution(time.monotonic())

    def _finish_execution(self, event: Any) -> _Execution | None:
        with self._lock:
            return self._executions.pop(self._exec_key(event.agent, event.task), None)

    def _on_agent_completed(self, source: Any, event: Any) -> None:
        self._agent_done(source, event, "completed", "agent_done", None)

    def _on_agent_error(self, source: Any, event: Any) -> None:
        self._agent_done(source, event, "error", "agent_error", "agent execution error")

    def _agent_done(
        self, source: Any, event: Any, outcome: str, priority: str, error: str | None
    ) -> None:
        execution = self._finish_execution(event)
        if not self.record_agents:
            return
        role = str(getattr(event.agent, "role", "") or "agent")
        extra: dict[str, Any] = {"framework": "crewai", "agent_role": role}
        if execution is not None:
            extra["duration_ms"] = round((time.monotonic() - execution.started) * 1000, 1)
            extra["tools_used"] = sorted(set(execution.tools))
            extra["tool_calls"] = len(execution.tools)
            extra["tool_failures"] = execution.failures
        label = self._task_label(event.task)
        verb = "finished" if error is None else "failed on"
        self._record(
            source, event, role, "record_interaction",
            summary=f"{role} {verb} {label}", outcome=outcome,
            priority=self.priorities[priority], **extra,
        )

    def _on_task_completed(self, source: Any, event: Any) -> None:
        if not self.record_tasks:
            return
        task = getattr(event, "task", None)
        output = event.output
        role = str(getattr(output, "agent", "") or getattr(event, "agent_role", "") or "agent")
        label = self._task_label(task)
        content = f"{role} completed {label}"
        raw = getattr(output, "raw", None)
        if self.include_outputs and isinstance(raw, str) and raw.strip():
            content += ": " + clip(raw, self.max_chars)
        self._record(
            source, event, role, "record_memory", content,
            tags=[*self.tags, "task", slug(role, "agent")], importance=0.6, confidence=0.8,
            priority=self.priorities["task_memory"],
            context={"task_id": getattr(event, "task_id", None), "trigger": "crewai.task"},
        )

    def _on_task_failed(self, source: Any, event: Any) -> None:
        if not self.record_tasks:
            return
        task = getattr(event, "task", None)
        agent = getattr(task, "agent", None)
        role = str(getattr(agent, "role", "") or "agent")
        error_type = getattr(event, "error_type", None)
        self._record(
            source, event, role, "record_interaction",
            summary=f"{role} failed {self._task_label(task)}",
            outcome="failed", priority=self.priorities["task_failed"],
            framework="crewai", agent_role=role, task_id=getattr(event, "task_id", None),
            error_type=getattr(error_type, "__name__", None),
        )

    def _tool_used(self, source: Any, event: Any, *, success: bool) -> None:
        role = event.agent_role
        agent_id = event.agent_id
        if agent_id is not None:
            with self._lock:
                for (aid, tid), execution in self._executions.items():
                    if aid == agent_id and (event.task_id is None or tid == event.task_id):
                        execution.tools.append(event.tool_name)
                        execution.failures += 0 if success else 1
                        break
        if not self.record_tools:
            return
        self._record(
            source, event, role, "record_skill_use", event.tool_name,
            success=success, category="tool", context=role or None,
            priority=self.priorities["tool_success" if success else "tool_failure"],
        )

    def _on_tool_finished(self, source: Any, event: Any) -> None:
        self._tool_used(source, event, success=getattr(event, "failure", None) is None)

    def _on_tool_error(self, source: Any, event: Any) -> None:
        if _retried(source, event):
            return  # the call is not over: its outcome is the next attempt's event
        self._tool_used(source, event, success=False)

    def _on_memory_save_started(self, source: Any, event: Any) -> None:
        stamp = getattr(event, "timestamp", None)
        if self.record_memory_saves and isinstance(stamp, datetime):
            with self._lock:
                starts = self._save_starts.setdefault(id(source), deque(maxlen=64))
                starts.append(stamp)

    def _on_memory_saved(self, source: Any, event: Any) -> None:
        if not self.record_memory_saves:
            return
        with self._lock:
            starts = self._save_starts.get(id(source))
            started = starts.popleft() if starts else None
        metadata = event.metadata or {}
        if metadata.get(SEED_MARK):
            return  # seeded by an earlier version of seed_crew_memory
        try:
            records = records_of_save(source, event, started=started)
        except Exception:
            log.debug("experience-sync: could not read the saved memories back", exc_info=True)
            records = None
        if records is None:
            # Not a CrewAI Memory (or it cannot be read): the value is the
            # memory, unless it is a batch summary, which never is.
            value = event.value
            if isinstance(value, str) and value.strip() and not is_batch_summary(value):
                self._record_saved(source, event, value, metadata.get("categories"),
                                   metadata.get("importance"))
            return
        for record in records:
            if record.private or record.source == SEED_SOURCE:
                continue  # private to its source / came from the source agent
            if (record.metadata or {}).get(SEED_MARK) or not self._first_sight(record.id):
                continue
            self._record_saved(source, event, record.content, record.categories,
                               record.importance)

    def _first_sight(self, record_id: str) -> bool:
        with self._lock:
            if record_id in self._seen_records:
                return False
            self._seen_records[record_id] = None
            if len(self._seen_records) > _SEEN_LIMIT:
                del self._seen_records[next(iter(self._seen_records))]
            return True

    def _record_saved(
        self, source: Any, event: Any, content: Any, categories: Any, importance: Any
    ) -> None:
        if not isinstance(content, str) or not content.strip():
            return
        tags = [*self.tags, "memory"]
        if isinstance(categories, (list, tuple)):
            tags += [str(c) for c in categories]
        if not isinstance(importance, (int, float)) or not 0 <= importance <= 1:
            importance = 0.5
        self._record(
            source, event, event.agent_role, "record_memory", clip(content, self.max_chars),
            tags=tags, importance=float(importance), confidence=0.8,
            priority=self.priorities["memory_save"],
            context={"task_id": event.task_id, "trigger": "crewai.memory"},
        )

    def _on_knowledge(self, source: Any, event: Any) -> None:
        if not self.record_knowledge:
            return
        text = event.retrieved_knowledge
        if not isinstance(text, str):
            return
        # What FleetKnowledge recalled came from the fleet: never send it back.
        # CrewAI prefixes each knowledge's snippets; keep the documents.
        parts = SERVED.strip(text).split(_KNOWLEDGE_PREFIX)
        text = "\n".join(p.strip() for p in parts if p.strip())
        if not text:
            return
        role = event.agent_role
        evidence = "crewai knowledge retrieval" + (f" by {role}" if role else "")
        self._record(
            source, event, role, "record_knowledge", clip(text, self.max_chars),
            confidence=0.6, evidence=evidence, priority=self.priorities["knowledge"],
        )


def _retried(source: Any, event: Any) -> bool:
    """Whether CrewAI will run this failed tool attempt again.

    CrewAI's ReAct tool runner (``ToolUsage``, the event's source) retries a
    tool that raised until ``run_attempts`` reaches its attempt limit (3, or 2
    for some OpenAI models), emitting one ``ToolUsageErrorEvent`` per failed
    attempt; the call ends with a ``ToolUsageFinishedEvent`` (a retry worked)
    or an error at the limit. Native function calls are not retried and carry
    ``run_attempts`` 0. (Inside one attempt CrewAI may call a raising tool a
    second time with the unfiltered arguments; that emits nothing.) The limit
    has no public accessor, hence the private attribute; without it every
    error counts.
    """
    attempt = getattr(event, "run_attempts", 0)
    limit = getattr(source, "_max_parsing_attempts", None)
    return (isinstance(attempt, int) and isinstance(limit, int)
            and 1 <= attempt < limit)


def _crew_of(source: Any, event: Any) -> Any:
    """The crew an event belongs to, when it can be found."""
    for holder in (
        getattr(event, "crew", None),
        getattr(getattr(event, "agent", None), "crew", None),
        getattr(getattr(getattr(event, "task", None), "agent", None), "crew", None),
        getattr(source, "crew", None),
        getattr(getattr(source, "agent", None), "crew", None),
    ):
        if holder is not None and not isinstance(holder, str):
            return holder
    return None
