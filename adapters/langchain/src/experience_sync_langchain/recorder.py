"""The mapping from LangChain callbacks to experience events.

It is shared by the sync and async handlers of
:mod:`experience_sync_langchain.callbacks`.

:class:`ExperienceSyncRecorder` keeps the runs in flight (keyed by ``run_id``,
each knowing its top-level run) behind a lock, and hands experiences to the
manager; a failed recording is logged and counted, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partialmethod
from typing import TYPE_CHECKING, Any
from uuid import UUID

from experience_sync.api import SuccessRates, clip, fit_kwargs

if TYPE_CHECKING:
    from langchain_core.agents import AgentFinish
    from langchain_core.documents import Document

log = logging.getLogger("experience_sync_langchain")

#: Custom event names the handler understands (``dispatch_custom_event(name, data)``).
CUSTOM_EVENTS = (
    "experience_sync.memory",
    "experience_sync.knowledge",
    "experience_sync.skill",
    "experience_sync.characteristic",
)

#: Default priority of each kind of recorded experience. Failures rank above
#: successes because they are what other instances most need to learn from.
DEFAULT_PRIORITIES: dict[str, float] = {
    "tool_success": 0.5,
    "tool_failure": 0.7,
    "retrieval": 0.5,
    "run": 0.5,
    "run_error": 0.7,
    "output_memory": 0.6,
    "custom_memory": 0.7,
}


def output_text(value: Any) -> str | None:
    """A readable text for a chain or tool output (message content, ``output`` key)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(value, Mapping):
        for key in ("output", "answer", "result", "text"):
            if key in value:
                return output_text(value[key])
        messages = value.get("messages")
        if isinstance(messages, Sequence) and messages:
            return output_text(messages[-1])
        return None
    if isinstance(value, Sequence) and value:
        return output_text(value[-1])
    return None


@dataclass
class _Run:
    kind: str
    name: str
    root: UUID
    started: float
    tools: list[str] = field(default_factory=list)
    failures: int = 0


class ExperienceSyncRecorder:
    """The state and mapping shared by the sync and async handlers.

    :param manager: an initialised ``ExperienceSyncManager``.
    :param instance_id: the instance to record for (initialised on the manager).
    :param record_tools: tool ends and errors become skill usage.
    :param record_retrievals: retriever results become knowledge items. Off by
        default: a retrieved document is what the agent read, not what it
        learned (and a retriever over the fleet's own learning would record it
        back as new knowledge). Turn it on for a corpus you want the fleet to
        verify as knowledge.
    :param record_runs: top-level run ends and errors become interactions.
    :param remember_outputs: also keep a top-level run's final output as a memory.
    :param include_outputs: put output text in interaction summaries.
    :param max_chars: longest text recorded from a run, document or output.
    :param max_documents: most documents kept from one retrieval.
    :param skill_category: category of the skills tools are recorded as.
    :param tags: tags added to every memory the handler records.
    :param priorities: overrides of :data:`DEFAULT_PRIORITIES`.
    """

    def __init__(
        self,
        manager: Any,
        instance_id: str,
        *,
        record_tools: bool = True,
        record_retrievals: bool = False,
        record_runs: bool = True,
        remember_outputs: bool = False,
        include_outputs: bool = False,
        max_chars: int = 2000,
        max_documents: int = 5,
        skill_category: str = "tool",
        tags: Sequence[str] = ("langchain",),
        priorities: Mapping[str, float] | None = None,
    ) -> None:
        self.manager = manager
        self.instance_id = instance_id
        self.record_tools = record_tools
        self.record_retrievals = record_retrievals
        self.record_runs = record_runs
        self.remember_outputs = remember_outputs
        self.include_outputs = include_outputs
        self.max_chars = max_chars
        self.max_documents = max_documents
        self.skill_category = skill_category
        self.tags = list(tags)
        self.priorities = {**DEFAULT_PRIORITIES, **(priorities or {})}
        self.recorded = 0
        self.errors = 0
        #: Each tool's success rate so far, reported as the skill's proficiency.
        self.skill_rates = SuccessRates()
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        # A recording failure must never break the user's run: log and count it.
        try:
            func = getattr(self.manager, method)
            func(self.instance_id, *args, **fit_kwargs(func, kwargs))
        except Exception:
            with self._lock:
                self.errors += 1
            log.warning("experience-sync: %s failed", method, exc_info=True)
        else:
            with self._lock:
                self.recorded += 1

    def start(
        self,
        kind: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        """Note a run of ``kind`` (``"tool"``, ``"chain"``, ``"retriever"``) in flight.

        Its name is the callback's ``name``, else the serialized name or id,
        else ``kind``; its top-level run is its parent's (itself without one).
        """
        name = self._name(serialized, kwargs, kind)
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            root = parent.root if parent is not None else run_id
            self._runs[run_id] = _Run(kind, name, root, time.monotonic())

    def _finish(self, run_id: UUID) -> tuple[_Run | None, _Run | None]:
        """Forget a run; returns it and its root run (itself for a top-level run)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is None:
                return None, None
            root = run if run.root == run_id else self._runs.get(run.root)
            return run, root

    @staticmethod
    def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
        name = kwargs.get("name")
        if not name and serialized:
            name = serialized.get("name")
            if not name:
                ids = serialized.get("id")
                if isinstance(ids, list) and ids:
                    name = ids[-1]
        return str(name or default)

    # ------------------------------------------------------------------ tools

    #: ``tool_start(serialized, run_id, parent_run_id, kwargs)``: a tool run begins.
    tool_start = partialmethod(start, "tool")

    def tool_end(self, output: Any, run_id: UUID) -> None:
        """End a tool run: a skill use that succeeded unless the output's status is error."""
        failed = getattr(output, "status", None) == "error"
        self._tool_done(run_id, success=not failed)

    def tool_error(self, error: BaseException, run_id: UUID) -> None:
        """End a tool run as a failure."""
        self._tool_done(run_id, success=False)

    def _tool_done(self, run_id: UUID, *, success: bool) -> None:
        run, root = self._finish(run_id)
        if run is None:
            return
        if root is not None and root is not run:
            with self._lock:
                root.tools.append(run.name)
                root.failures += 0 if success else 1
        if not self.record_tools:
            return
        # The skill's context is where it was used: the top-level run's name.
        where = root.name if root is not None and root is not run else None
        self._call(
            "record_skill_use",
            run.name,
            success=success,
            proficiency=self.skill_rates.observe(self.instance_id, run.name, success),
            category=self.skill_category,
            context=where,
            priority=self.priorities["tool_success" if success else "tool_failure"],
        )

    # ------------------------------------------------------------------ chains

    #: ``chain_start(serialized, run_id, parent_run_id, kwargs)``: a chain run begins.
    chain_start = partialmethod(start, "chain")

    def chain_end(self, outputs: Any, run_id: UUID) -> None:
        """End a chain run; a top-level one becomes a successful interaction.

        That is with ``record_runs``; with ``remember_outputs`` its output text
        is also kept as a memory.
        """
        run, root = self._finish(run_id)
        if run is None or root is not run:
            return  # only top-level runs are interactions
        text = output_text(outputs)
        if self.record_runs:
            summary = f"{run.name} finished"
            if self.include_outputs and text:
                summary += ": " + clip(text, self.max_chars)
            self._interaction(run, summary, "success", "run")
        if self.remember_outputs:
            self._remember_output(text, run.name, "langchain.run", run_id)

    def chain_error(self, error: BaseException, run_id: UUID) -> None:
        """End a chain run; a top-level one becomes a failed interaction (``record_runs``)."""
        run, root = self._finish(run_id)
        if run is None or root is not run or not self.record_runs:
            return
        self._interaction(run, f"{run.name} failed", "error", "run_error", type(error).__name__)

    def _interaction(
        self, run: _Run, summary: str, outcome: str, priority: str, error_type: str | None = None
    ) -> None:
        extra: dict[str, Any] = {
            "framework": "langchain",
            "run_name": run.name,
            "duration_ms": round((time.monotonic() - run.started) * 1000, 1),
            "tools_used": sorted(set(run.tools)),
            "tool_calls": len(run.tools),
            "tool_failures": run.failures,
        }
        if error_type:
            extra["error_type"] = error_type
        self._call(
            "record_interaction",
            summary=summary,
            outcome=outcome,
            priority=self.priorities[priority],
            **extra,
        )

    def agent_finish(self, finish: AgentFinish, run_id: UUID) -> None:
        """Keep a legacy agent's final answer as a memory (with ``remember_outputs``)."""
        # Legacy AgentExecutor: the final answer arrives here rather than as a
        # chain output; it is kept only when outputs are to be remembered.
        if not self.remember_outputs:
            return
        text = output_text(getattr(finish, "return_values", None))
        self._remember_output(text, "agent", "langchain.agent_finish", run_id)

    def _remember_output(self, text: str | None, tag: str, trigger: str, run_id: UUID) -> None:
        if text and text.strip():
            self._call(
                "record_memory",
                clip(text, self.max_chars),
                tags=[*self.tags, tag],
                importance=0.5,
                confidence=0.7,
                priority=self.priorities["output_memory"],
                context={"trigger": trigger, "conversation_id": str(run_id)},
            )

    # ------------------------------------------------------------------ retrievers

    #: ``retriever_start(serialized, run_id, parent_run_id, kwargs)``: a retriever run begins.
    retriever_start = partialmethod(start, "retriever")

    def retriever_error(self, error: BaseException, run_id: UUID) -> None:
        """A failed retrieval records nothing; the run is forgotten."""
        self._finish(run_id)

    def retriever_end(self, documents: Sequence[Document], run_id: UUID) -> None:
        """End a retriever run; with ``record_retrievals`` its documents become knowledge.

        At most ``max_documents`` are recorded, empty ones skipped.
        """
        run, _ = self._finish(run_id)
        if not self.record_retrievals:
            return
        name = run.name if run is not None else "retriever"
        for doc in list(documents)[: self.max_documents]:
            content = getattr(doc, "page_content", "")
            if not isinstance(content, str) or not content.strip():
                continue
            metadata = getattr(doc, "metadata", None) or {}
            source = metadata.get("source") or getattr(doc, "id", None)
            evidence = f"retrieved by {name}" + (f" from {source}" if source else "")
            self._call(
                "record_knowledge",
                clip(content, self.max_chars),
                confidence=0.6,
                evidence=evidence,
                priority=self.priorities["retrieval"],
            )

    # ------------------------------------------------------------------ custom events

    @staticmethod
    def _event_content(name: str, data: Any, payload: dict[str, Any]) -> str | None:
        # A bare string is the content; a mapping carries it under "content".
        content = data if isinstance(data, str) else payload.pop("content", None)
        if not isinstance(content, str) or not content.strip():
            log.warning("experience-sync: %s without content ignored", name)
            return None
        return content

    def custom_event(self, name: str, data: Any, run_id: UUID) -> None:
        """Record an ``experience_sync.*`` custom event (others are ignored).

        ``data`` is the content as a string, or a mapping of the recording
        method's arguments; an event missing its content, name or key is
        logged and dropped.
        """
        if name not in CUSTOM_EVENTS:
            return
        kind = name.rsplit(".", 1)[1]
        payload: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {}
        context = {"trigger": f"langchain.{name}", "conversation_id": str(run_id)}
        if kind == "memory":
            content = self._event_content(name, data, payload)
            if content is None:
                return
            tags = [*self.tags, *payload.pop("tags", ())]
            payload.setdefault("priority", self.priorities["custom_memory"])
            self._call("record_memory", content, tags=tags, context=context, **payload)
        elif kind == "knowledge":
            content = self._event_content(name, data, payload)
            if content is None:
                return
            self._call("record_knowledge", content, **payload)
        elif kind == "skill":
            skill = payload.pop("name", None)
            if not skill:
                log.warning("experience-sync: %s without name ignored", name)
                return
            self._call("record_skill_use", skill, **payload)
        else:
            if "key" not in payload:
                log.warning("experience-sync: %s without key ignored", name)
                return
            key = payload.pop("key")
            self._call("record_characteristic", key, payload.pop("value", None), **payload)
