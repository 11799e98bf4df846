"""Forgetting: what a data-deletion request selects, what it answers, and its audit record.

A forget removes experiences from a source agent for good: the events it
selects are rewritten in the hub's log as redacted entries (their ids stay,
so an instance that sends one again gets it answered as a duplicate), a
*tombstone* entry is appended (replay honours it), and the state and search
index are rebuilt from what remains. The same selection purges an
instance's unsent outbox rows (:meth:`ExperienceSyncManager.forget_unsent
<experience_sync.client.manager.ExperienceSyncManager.forget_unsent>`).

Selectors (any mix; an event matching one is forgotten):

- ``memory_ids``, ``knowledge_ids``, ``skill_ids``: the events that made
  those items (a memory's source events and superseded statements, every
  report of a knowledge item's key or a skill's name);
- ``event_ids``: those events;
- ``instance_ids``: everything those instances sent;
- ``subject``: knowledge about that subject, characteristics of that key,
  memories tagged with it (compared case-folded and whitespace-normalized);
- ``query``: every event whose text (any string in its data or context)
  contains it, both normalized (case, punctuation and spacing do not matter;
  it matches inside words, so ``Ann`` takes ``Anne`` too: ``dry_run`` first
  shows the count): a person's name for a data-deletion request.

Neither the audit record nor the tombstone holds the query, the subject or
any deleted text: only counts, the instance ids and who asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from experience_sync.models import IdText, Timestamp, utcnow
from experience_sync.text import normalize

__all__ = [
    "FORGET_SELECTORS",
    "MAX_FORGET_IDS",
    "ForgetRecord",
    "ForgetRequest",
    "ForgetResult",
    "event_matches",
    "event_text",
    "redacted_body",
]

#: Ids one forget request may list, all selectors together.
MAX_FORGET_IDS = 10_000
#: The id selectors, then the text ones, in the order they are documented.
FORGET_SELECTORS = (
    "memory_ids", "knowledge_ids", "skill_ids", "event_ids", "instance_ids", "subject", "query",
)

_Id = IdText

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ForgetRequest(_Model):
    """What to forget (body of ``DELETE /v1/agents/{agent_id}/experiences``)."""

    memory_ids: list[_Id] = Field(default_factory=list, max_length=MAX_FORGET_IDS)
    knowledge_ids: list[_Id] = Field(default_factory=list, max_length=MAX_FORGET_IDS)
    skill_ids: list[_Id] = Field(default_factory=list, max_length=MAX_FORGET_IDS)
    event_ids: list[_Id] = Field(default_factory=list, max_length=MAX_FORGET_IDS)
    instance_ids: list[_Id] = Field(default_factory=list, max_length=MAX_FORGET_IDS)
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    query: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="Forget every event with this text in its data or context (compared "
        "normalized: case, punctuation and spacing do not matter; it matches inside words).",
    )
    dry_run: bool = Field(default=False, description="Count what would go; change nothing.")

    @model_validator(mode="after")
    def _something(self) -> ForgetRequest:
        if not self.selectors():
            raise ValueError(f"name at least one of {', '.join(FORGET_SELECTORS)}")
        if self.query is not None and not normalize(self.query):
            raise ValueError("query must hold a word")
        if self.subject is not None and not normalize(self.subject):
            raise ValueError("subject must hold a word")
        ids = sum(len(getattr(self, n)) for n in FORGET_SELECTORS[:5])
        if ids > MAX_FORGET_IDS:
            raise ValueError(f"at most {MAX_FORGET_IDS} ids in one request, not {ids}")
        return self

    def selectors(self) -> dict[str, int]:
        """How many values each selector in use names (text selectors count 1)."""
        out: dict[str, int] = {}
        for name in FORGET_SELECTORS:
            value = getattr(self, name)
            if value:
                out[name] = len(value) if isinstance(value, list) else 1
        return out


class ForgetResult(_Model):
    """What a forget did (or, with ``dry_run``, would do)."""

    forget_id: str
    agent_id: str
    dry_run: bool = False
    cursor: int = Field(0, description="The agent's cursor after the forget.")
    events_forgotten: int = 0
    removed: dict[str, int] = Field(
        default_factory=dict,
        description="Items gone from the state, by table: memories, skills, knowledge, "
        "characteristics, reviews.",
    )
    snapshot_rewritten: bool = Field(
        False, description="A compacted log's snapshot held some of it and was rewritten."
    )


class ForgetRecord(_Model):
    """One entry of the audit trail: who forgot what scope when, and how much. Never the text."""

    forget_id: str
    agent_id: str
    at: Timestamp = Field(default_factory=utcnow)
    token_id: str | None = Field(None, description="The token that asked (None: the CLI on the store, or --no-auth).")
    principal_instance: str | None = None
    principal_scope: str | None = None
    selectors: dict[str, int] = Field(
        default_factory=dict, description="Selector name -> how many values it named."
    )
    instance_ids: list[str] = Field(default_factory=list, description="The instances forgotten whole.")
    events_forgotten: int = 0
    removed: dict[str, int] = Field(default_factory=dict)


def redacted_body(forget_id: str) -> str:
    """The body a forgotten log entry is rewritten to: no trace of what it held."""
    return '{"forgotten":"' + forget_id + '"}'


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def event_text(event: dict[str, Any]) -> str:
    """Every string of an event's ``data`` and ``context`` (keys too), normalized, one per line."""
    return "\n".join(normalize(s) for s in _strings([event.get("data"), event.get("context")]))


def event_matches(event: dict[str, Any], request: ForgetRequest) -> bool:
    """Whether a wire-JSON event falls under the request's text or instance selectors.

    The item selectors (``memory_ids``, ...) need the hub's state and are
    resolved there; ``event_ids``, ``instance_ids``, ``subject`` and
    ``query`` are decided here, the same way on the hub and in an outbox.
    """
    if event.get("event_id") in request.event_ids:
        return True
    if request.instance_ids and event.get("source_instance") in request.instance_ids:
        return True
    data = event.get("data") or {}
    if request.subject is not None and isinstance(data, dict):
        wanted = normalize(request.subject)
        kind = event.get("event_type")
        if kind == "knowledge" and normalize(str(data.get("subject") or "")) == wanted:
            return True
        if kind == "characteristic" and normalize(str(data.get("key") or "")) == wanted:
            return True
        if kind == "memory" and any(normalize(str(t)) == wanted for t in data.get("tags") or ()):
            return True
    if request.query is not None:
        return normalize(request.query) in event_text(event)
    return False
