"""Search documents: the searchable view of a memory, a knowledge item or a skill.

One :class:`SearchDoc` per item is what every text and vector index holds, on
the hub and in an instance's replica, so the two rank the same thing. A
document's ``text`` is also what a prompt shows: the item's own words, never
ids, hashes or instance names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from experience_sync.models import ExperienceEvent, KnowledgeItem, Memory, Skill

from .models import Provenance, SearchHit, SearchKind, SearchQuery

__all__ = [
    "DocKey",
    "SearchDoc",
    "doc_of_event",
    "doc_of_knowledge",
    "doc_of_memory",
    "doc_of_skill",
    "identifier_terms",
    "index_text",
    "matches",
    "skill_text",
]

#: ``(kind, id)``: a document's identity within one agent.
DocKey = tuple[str, str]


@dataclass
class SearchDoc:
    """One searchable item.

    :param kind: ``memory``, ``knowledge`` or ``skill``.
    :param key: the item's key: a memory or skill id, a knowledge item's
        ``key`` (the hub's identity of the item), ``event:<id>`` when local.
    :param text: what is indexed and what a prompt shows.
    :param status: ``active`` (memories, skills), ``integrated`` or ``pending``.
    :param confidence: the item's confidence (a skill's proficiency).
    :param tags: memory tags.
    :param instances: the instances that reported it.
    :param verifications: knowledge: distinct verifying instances.
    :param updated: ISO time of the last change (the replica evicts the oldest).
    :param body: the item as JSON text (kept by the replica; the hub reads its
        live objects instead).
    :param local: recorded here, not yet acknowledged by the hub.
    :param seq: for a local document, the outbox sequence of its event.
    """

    kind: str
    key: str
    text: str
    status: str = "active"
    confidence: float = 0.0
    tags: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    verifications: int = 0
    updated: str = ""
    body: str = ""
    local: bool = False
    seq: int = 0

    @property
    def doc_key(self) -> DocKey:
        """``(kind, key)``."""
        return (self.kind, self.key)

    def hit(self, score: float, rankers: list[str], item: dict[str, Any] | None = None) -> SearchHit:
        """This document as a search hit (``item`` defaults to the parsed body)."""
        if item is None:
            item = json.loads(self.body) if self.body else {}
        kind: SearchKind = self.kind  # type: ignore[assignment]
        # A knowledge document is keyed as the hub keys the item; a hit names
        # it by its knowledge_id, as every other read does.
        hit_id = self.key
        if kind == "knowledge" and not self.local and item.get("knowledge_id"):
            hit_id = str(item["knowledge_id"])
        return SearchHit(
            kind=kind,
            id=hit_id,
            score=score,
            text=self.text,
            item=item,
            provenance=Provenance(
                source_instances=list(self.instances),
                verifications=self.verifications,
                status=self.status if self.kind == "knowledge" else None,
                local=self.local,
            ),
            rankers=rankers,
        )


# A word joined by underscores (``rotate_keys_checkout_flow``, ``payments_api``):
# what tool and skill names look like.
_IDENTIFIER = re.compile(r"[^\W_]+(?:_+[^\W_]+)+")
_PART = re.compile(r"[^\W_]+")


def identifier_terms(word: str) -> list[str]:
    """An identifier as text indexes see it: one fused token, then its parts.

    ``payments_api`` gives ``["paymentsapi", "payments", "api"]``; a word
    without an underscore between two word characters gives ``[word]``.
    """
    if not _IDENTIFIER.fullmatch(word):
        return [word]
    parts = _PART.findall(word)
    return ["".join(parts), *parts]


def index_text(text: str) -> str:
    """The text a text index holds for a document whose text is ``text``.

    An identifier is kept as one fused token (``rotatekeyscheckoutflow``),
    which a query naming the identifier matches exactly (see
    :func:`~experience_sync.recall.fts.query_terms`), followed by those of its
    words that the rest of the text (or an earlier identifier) does not contain. So a skill named
    ``rotate_keys_checkout_flow`` that was used for "Rotating leaked keys of
    the checkout flow" holds *checkout* and *flow* once each, as its uses
    say them, not once more for the name (a text index would otherwise split
    the name at the underscores and count its words again, and a skill would
    outrank a memory that says the same words once); a skill used in no
    recorded context is still found by the words of its name. Everything
    else is unchanged.
    """
    if "_" not in text:
        return text
    said = {w.casefold() for w in _PART.findall(_IDENTIFIER.sub(" ", text))}

    def spell(match: re.Match[str]) -> str:
        fused, *parts = identifier_terms(match.group(0))
        missing = [p for p in dict.fromkeys(parts) if p.casefold() not in said]
        said.update(p.casefold() for p in missing)  # once in the whole text
        return " ".join([fused, *missing])

    return _IDENTIFIER.sub(spell, text)


def skill_text(name: str, category: str, contexts: list[str]) -> str:
    """A skill's searchable text: its name, category and the contexts it was used in."""
    parts = [name if category in ("", "general") else f"{name} ({category})"]
    if contexts:
        parts.append("used for: " + "; ".join(contexts[-5:]))
    return ". ".join(parts)


def doc_of_memory(memory: Memory, *, with_body: bool = False) -> SearchDoc:
    """The document of a merged memory."""
    return SearchDoc(
        kind="memory",
        key=memory.memory_id,
        text=memory.content,
        confidence=memory.confidence,
        tags=list(memory.tags),
        instances=list(memory.source_instances),
        updated=memory.updated_at.isoformat(),
        body=memory.model_dump_json() if with_body else "",
    )


def doc_of_knowledge(item: KnowledgeItem, *, with_body: bool = False) -> SearchDoc:
    """The document of a knowledge item (its subject leads the text)."""
    text = item.content
    if item.subject and item.subject.casefold() not in text.casefold():
        text = f"{item.subject}: {text}"
    stamps = [v.timestamp for v in item.verifications.values()]
    updated = max(stamps) if stamps else item.first_seen
    return SearchDoc(
        kind="knowledge",
        key=item.key,
        text=text,
        status=item.status,
        confidence=item.confidence,
        instances=sorted(item.verifications),
        verifications=len(item.verifications),
        updated=updated.isoformat(),
        body=item.model_dump_json() if with_body else "",
    )


def doc_of_skill(skill: Skill, *, with_body: bool = False) -> SearchDoc:
    """The document of an accumulated skill."""
    last = skill.usage.last_used or skill.acquired
    return SearchDoc(
        kind="skill",
        key=skill.skill_id,
        text=skill_text(skill.name, skill.category, skill.usage.contexts),
        confidence=skill.proficiency,
        instances=list(skill.source_instances),
        updated=last.isoformat(),
        body=skill.model_dump_json() if with_body else "",
    )


def doc_of_event(event: ExperienceEvent) -> SearchDoc | None:
    """The document of an event recorded here and not yet merged (read-your-writes).

    Memories and knowledge are searchable at once; other events are not.
    """
    key = f"event:{event.event_id}"
    updated = event.timestamp.isoformat()
    body = event.data.model_dump_json()
    if event.event_type == "memory":
        m = event.memory
        return SearchDoc(
            kind="memory", key=key, text=m.content, confidence=m.confidence, tags=list(m.tags),
            instances=[event.source_instance], updated=updated, body=body, local=True,
            seq=event.sequence,
        )
    if event.event_type == "knowledge":
        k = event.knowledge
        text = k.content
        if k.subject and k.subject.casefold() not in text.casefold():
            text = f"{k.subject}: {text}"
        return SearchDoc(
            kind="knowledge", key=key, text=text, status="pending", confidence=k.confidence,
            instances=[event.source_instance], verifications=1, updated=updated, body=body,
            local=True, seq=event.sequence,
        )
    return None


def matches(doc: SearchDoc, query: SearchQuery) -> bool:
    """Whether ``doc`` passes the query's filters (kinds, tags, confidence, status)."""
    if doc.kind not in query.kinds:
        return False
    if query.tags:
        if doc.kind != "memory":
            return False
        have = {t.casefold() for t in doc.tags}
        if not all(t.casefold() in have for t in query.tags):
            return False
    if query.min_confidence is not None and doc.confidence < query.min_confidence:
        return False
    # A local knowledge item is pending until the hub integrates it, but this
    # instance asked for what it itself recorded: it is shown either way.
    return not (
        doc.kind == "knowledge"
        and query.knowledge_status != "all"
        and not doc.local
        and doc.status != query.knowledge_status
    )
