"""The shapes of a search: what is asked (:class:`SearchQuery`) and what comes back.

They are wire models: the hub's ``/v1/agents/{agent_id}/search`` route takes a
:class:`SearchQuery` (query string or JSON body) and answers
:class:`SearchResults`; ``ExperienceSyncManager.search`` returns the same
:class:`SearchHit` objects from the instance's local replica.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experience_sync.models import Tag

__all__ = [
    "KINDS",
    "Provenance",
    "SearchHit",
    "SearchKind",
    "SearchQuery",
    "SearchResults",
]

SearchKind = Literal["memory", "knowledge", "skill"]
#: Every kind a search can return, in the order hits of equal score are listed.
KINDS: tuple[SearchKind, ...] = ("memory", "knowledge", "skill")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SearchQuery(_Model):
    """A ranked search over a source agent's merged learning.

    :param q: the query text (1-2,000 characters).
    :param k: how many hits to return (1-100).
    :param kinds: which kinds of item to search.
    :param tags: only memories carrying every one of these tags (knowledge and
        skills have no tags and are not returned when tags are given).
    :param min_confidence: only items at least this confident (a skill's
        proficiency counts as its confidence).
    :param knowledge_status: ``integrated`` (default) returns only knowledge
        enough instances verified; ``pending`` only the rest; ``all`` both.
    """

    q: str = Field(min_length=1, max_length=2000)
    k: int = Field(default=5, ge=1, le=100)
    kinds: list[SearchKind] = Field(default_factory=lambda: list(KINDS))
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    knowledge_status: Literal["integrated", "pending", "all"] = "integrated"

    @field_validator("q")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if "\x00" in value:
            raise ValueError("must not contain the NUL character (\\u0000)")
        return value

    @field_validator("kinds")
    @classmethod
    def _some_kind(cls, value: list[SearchKind]) -> list[SearchKind]:
        if not value:
            raise ValueError("must name at least one of memory, knowledge, skill")
        return list(dict.fromkeys(value))


class Provenance(_Model):
    """Where a hit's learning came from.

    :param source_instances: the instances that reported it.
    :param verifications: knowledge only: how many distinct instances verified it.
    :param status: knowledge only: ``integrated`` or ``pending``.
    :param local: recorded by this instance and not yet acknowledged by the hub
        (a read-your-writes hit from the local replica).
    """

    source_instances: list[str] = Field(default_factory=list)
    verifications: int = 0
    status: str | None = None
    local: bool = False


class SearchHit(_Model):
    """One ranked result.

    :param kind: ``memory``, ``knowledge`` or ``skill``.
    :param id: the item's id (memory id, knowledge id, skill id; for a local
        hit ``event:<event_id>``).
    :param score: the fused score (higher is better; comparable within one search).
    :param text: the text a prompt should show (no ids, hashes or instance names).
    :param item: the whole item as the hub holds it (``Memory``, ``KnowledgeItem``
        or ``Skill`` as JSON; for a local hit the recorded event's data).
    :param provenance: its sources and verification.
    :param rankers: the rankers that matched it (``bm25``, ``vector``, ...).
    """

    kind: SearchKind
    id: str
    score: float
    text: str
    item: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    rankers: list[str] = Field(default_factory=list)


class SearchResults(_Model):
    """What the search route answers.

    :param hits: best first.
    :param rankers: the rankers that ran (whether or not they matched anything).
    :param cursor: the agent's cursor the results reflect.
    """

    agent_id: str
    query: SearchQuery
    hits: list[SearchHit] = Field(default_factory=list)
    rankers: list[str] = Field(default_factory=list)
    cursor: int = 0
