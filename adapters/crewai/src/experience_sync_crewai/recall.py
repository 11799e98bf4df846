"""The read path: what the fleet learned, in each CrewAI task's prompt as it runs.

One line for the user::

    crew = Crew(agents=[...], tasks=[...], knowledge=FleetKnowledge(manager, "inst"))

(or ``Agent(..., knowledge=FleetKnowledge(manager, "inst"))`` for one agent).

Why knowledge and not memory: before every task CrewAI 1.15 asks the agent's
LLM for a search query ("The original query is: <task prompt>"), passes it to
the ``search`` of its ``Knowledge``'s storage and appends the results'
``content`` to the task prompt ("Additional Information: ..."); nothing else
of a result (id, metadata, score) reaches the model. That storage is a small
public interface (``BaseKnowledgeStorage``: ``search``/``save``/``reset`` and
their async twins) that receives text, so :class:`FleetKnowledgeStorage`
answers it with ``manager.search(instance_id, query)`` on the instance's local
replica (offline, read-your-writes) rendered by ``render_hits``. The memory
hooks do not fit: ``Crew(memory=...)`` only takes CrewAI's own ``Memory``
(a storage backend there receives an embedding, not text), and CrewAI prints
every recalled memory with its score, categories and metadata. A knowledge
*source* does not fit either: CrewAI queries the ``Knowledge``'s storage,
never its sources.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from crewai.knowledge.knowledge import Knowledge
from crewai.knowledge.storage.base_knowledge_storage import BaseKnowledgeStorage
from crewai.rag.types import SearchResult
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import Field, PrivateAttr

from experience_sync.api import SearchHit, render_hits, skill_reliability

log = logging.getLogger("experience_sync_crewai")

#: The first line of the recalled block in a prompt.
DEFAULT_HEADER = "Relevant things learned across the fleet:"
#: The first line of :func:`tool_reliability`'s block.
TOOLS_HEADER = "How these tools have worked across the fleet:"
_SERVED_LIMIT = 256


class _Served:
    """The blocks handed to CrewAI lately (bounded).

    They let the listener tell recalled text from retrieved documents and never
    send it back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: OrderedDict[str, None] = OrderedDict()

    def add(self, block: str) -> None:
        with self._lock:
            self._blocks[block] = None
            self._blocks.move_to_end(block)
            while len(self._blocks) > _SERVED_LIMIT:
                self._blocks.popitem(last=False)

    def strip(self, text: str) -> str:
        with self._lock:
            blocks = list(self._blocks)
        for block in blocks:
            text = text.replace(block, "")
        return text


SERVED = _Served()


def _tool_name(tool: Any) -> str:
    name = tool if isinstance(tool, str) else getattr(tool, "name", "")
    return sanitize_tool_name(str(name)) if name else ""


def tool_reliability(
    manager: Any,
    instance_id: str,
    tools: Iterable[Any],
    *,
    header: str | None = TOOLS_HEADER,
) -> str:
    """How each of a crew's tools has worked across the fleet, as prompt lines.

    ``"census_api: succeeded in 0% of 3 uses across the fleet"``, one line per
    tool the fleet has merged uses of (from ``manager.search(instance_id,
    <tool name>, kinds=["skill"])`` on the local replica); tools without any
    are left out. Put it in a backstory or task description, or pass
    ``tools=`` to :class:`FleetKnowledge` to have it in every task's prompt.

    :param tools: CrewAI tools (``BaseTool``, ``@tool`` functions) or their names.
    :param header: the block's first line (``None`` for none).
    :returns: the block, or ``""`` when no tool has fleet data.
    """
    return _block(header, _reliability_lines(manager, instance_id, tools))


def _reliability_lines(manager: Any, instance_id: str, tools: Iterable[Any]) -> list[str]:
    lines: list[str] = []
    for name in dict.fromkeys(_tool_name(t) for t in tools):
        if not name:
            continue
        hits = manager.search(instance_id, name, k=5, kinds=["skill"])
        for hit in hits:
            # merged skills only: a local, unmerged use has no fleet-wide rate yet
            usage = hit.item.get("usage")
            if hit.item.get("name") == name and isinstance(usage, dict):
                lines.append(f"- {skill_reliability(hit.item)}")
                break
    return lines


def _block(header: str | None, lines: list[str]) -> str:
    if not lines:
        return ""
    return "\n".join(([header] if header else []) + lines)


class FleetKnowledgeStorage(BaseKnowledgeStorage):
    """A read-only CrewAI knowledge storage answering from the fleet's replica.

    ``search`` runs ``manager.search(instance_id, <CrewAI's query>)`` and
    returns one result whose ``content`` is the hits rendered by
    ``render_hits`` (their own words: no ids, hashes, instance names or
    scores). CrewAI's ``limit`` and ``score_threshold`` are for its vector
    stores and are not used: ``k`` and ``min_confidence`` choose the hits.
    Anything going wrong (an instance not initialised, a bad query) is logged
    and answered with nothing, so a task always runs.
    """

    manager: Any = Field(exclude=True)
    instance_id: str
    k: int = 5
    kinds: list[str] | None = None
    tags: list[str] = Field(default_factory=list)
    min_confidence: float | None = None
    header: str | None = DEFAULT_HEADER
    max_chars: int = 4000
    tools: list[str] = Field(default_factory=list)
    _warned: bool = PrivateAttr(default=False)

    def recall(self, query: str) -> str:
        """The block CrewAI puts in the prompt for ``query`` (``""`` for nothing)."""
        hits: list[SearchHit] = self.manager.search(
            self.instance_id, query, k=self.k, kinds=self.kinds, tags=self.tags,
            min_confidence=self.min_confidence,
        )
        recalled = render_hits(hits, header=self.header, max_chars=self.max_chars)
        if not self.tools:
            return recalled
        shown = set(recalled.splitlines())  # a skill hit already says the same
        lines = [line for line in _reliability_lines(self.manager, self.instance_id, self.tools)
                 if line not in shown]
        return "\n".join(p for p in (recalled, _block(TOOLS_HEADER, lines)) if p)

    def search(
        self,
        query: list[str],
        limit: int = 5,
        metadata_filter: dict[str, Any] | None = None,
        score_threshold: float = 0.6,
    ) -> list[SearchResult]:
        """Recall for CrewAI's knowledge queries (joined into one)."""
        text = " ".join(q for q in query if isinstance(q, str)).strip()
        if not text:
            return []
        try:
            block = self.recall(text)
        except Exception:
            if not self._warned:  # once, not per task
                self._warned = True
                log.warning("experience-sync: recall for instance %r failed; the task runs "
                            "without it", self.instance_id, exc_info=True)
            return []
        if not block:
            return []
        SERVED.add(block)
        return [{"id": "experience-sync", "content": block, "metadata": {}, "score": 1.0}]

    async def asearch(
        self,
        query: list[str],
        limit: int = 5,
        metadata_filter: dict[str, Any] | None = None,
        score_threshold: float = 0.6,
    ) -> list[SearchResult]:
        """As :meth:`search` (the replica is a local SQLite file: no waiting on a network)."""
        return self.search(query, limit, metadata_filter, score_threshold)

    def save(self, documents: list[str]) -> None:
        """Ignore documents: the fleet learns through the recorders, not through here."""
        if documents:
            log.debug("experience-sync: FleetKnowledge is read-only; %d documents ignored",
                      len(documents))

    async def asave(self, documents: list[str]) -> None:
        """As :meth:`save`."""
        self.save(documents)

    def reset(self) -> None:
        """Nothing to reset: the replica belongs to the manager."""

    async def areset(self) -> None:
        """As :meth:`reset`."""


class FleetKnowledge(Knowledge):
    """CrewAI ``Knowledge`` that recalls what the fleet learned into each task's prompt.

    ``Crew(..., knowledge=FleetKnowledge(manager, "inst"))`` or
    ``Agent(..., knowledge=FleetKnowledge(manager, "inst"))``. A crew given
    ``knowledge_sources`` builds its own ``knowledge`` and replaces this one:
    give it to the agents then.

    :param manager: the ``ExperienceSyncManager`` whose replica answers.
    :param instance_id: an instance initialised on it.
    :param k: most hits per task.
    :param kinds: restrict to ``memory``, ``knowledge`` and/or ``skill``.
    :param tags: only items carrying all these tags.
    :param min_confidence: skip less confident items.
    :param tools: tools (or names) whose fleet reliability is added to every
        prompt (see :func:`tool_reliability`).
    :param header: the block's first line.
    :param max_chars: longest block.
    """

    def __init__(
        self,
        manager: Any,
        instance_id: str,
        *,
        k: int = 5,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] = (),
        min_confidence: float | None = None,
        tools: Iterable[Any] = (),
        header: str | None = DEFAULT_HEADER,
        max_chars: int = 4000,
        collection_name: str = "experience-sync",
    ) -> None:
        storage = FleetKnowledgeStorage(
            manager=manager, instance_id=instance_id, k=k,
            kinds=list(kinds) if kinds is not None else None, tags=list(tags),
            min_confidence=min_confidence, header=header, max_chars=max_chars,
            tools=[n for n in (_tool_name(t) for t in tools) if n],
        )
        super().__init__(collection_name=collection_name, sources=[], storage=storage)
