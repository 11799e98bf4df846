"""How ElizaOS events become experience events.

Both faces of the adapter use this module: the bridge service (events posted
by the TypeScript plugin ``@experience-sync/elizaos-plugin``) and
:func:`experience_sync_elizaos.runtime.attach` (the Python ``elizaos``
runtime). Each ElizaOS event is first reduced to a small JSON object, the
*forwarded event* (see ``README.md`` for its fields), and then mapped here:

=====================  =============================================  ========
ElizaOS event          experience event                               priority
=====================  =============================================  ========
MESSAGE_RECEIVED       interaction (direction ``in``, no text)        0.3
MESSAGE_SENT           interaction (direction ``out``, no text)       0.3
ACTION_COMPLETED       skill usage of the action, success or failure  0.6 / 0.7
EVALUATOR_COMPLETED    knowledge per fact, memory for a summary,      0.6 / 0.5
                       else skill usage of the evaluator
RUN_ENDED              interaction (outcome completed/timeout/error)  0.3 / 0.6
MEMORY_CREATED         table ``facts``: knowledge; other tables:      0.6
                       memory; ``messages`` is not forwarded
=====================  =============================================  ========

Text that is forwarded (memory and fact text, summaries, errors, and message
text only when the plugin opts in) is truncated and passed through
:func:`redact_secrets` before it is recorded; the core's
``experience_sync_filter_event`` hook sees every event after that.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from experience_sync.api import EventContext

FRAMEWORK = "elizaos"

#: Forwarded event types this module maps; anything else is counted as ignored.
KNOWN_TYPES = frozenset(
    {
        "MESSAGE_RECEIVED",
        "MESSAGE_SENT",
        "ACTION_COMPLETED",
        "EVALUATOR_COMPLETED",
        "RUN_ENDED",
        "MEMORY_CREATED",
    }
)

#: Default longest text kept from any forwarded field, in characters.
DEFAULT_MAX_TEXT = 2000

# Shapes that are almost always credentials. Deliberately narrow: a redaction
# pass that eats ordinary words would corrupt the memories it is protecting.
_SECRET_PATTERNS = [
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}"),  # OpenAI/Anthropic/Stripe-style keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack tokens
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWTs
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/]{12,}=*"),
    re.compile(
        r"(?i)\b(api[_-]?key|secret|token|password|passwd)\b(\s*[:=]\s*)[\"']?[^\s\"']{6,}"
    ),
]


def redact_secrets(text: str) -> str:
    """Replace substrings that look like credentials with ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


@dataclass(frozen=True)
class MappingOptions:
    """What the mapping keeps.

    :param max_text_length: longest text kept from a forwarded field.
    :param memory_tables: ElizaOS memory tables whose new memories are recorded
        (``facts`` become knowledge, the others memories).
    :param knowledge_tables: tables whose memories are knowledge, not memories.
    :param skill_category: category given to skills learned from actions.
    :param record_messages: record MESSAGE_RECEIVED/MESSAGE_SENT as interactions.
    """

    max_text_length: int = DEFAULT_MAX_TEXT
    memory_tables: frozenset[str] = frozenset({"facts", "memories"})
    knowledge_tables: frozenset[str] = frozenset({"facts"})
    skill_category: str = "elizaos-action"
    record_messages: bool = True


@dataclass
class MemoryRecord:
    """Record through ``manager.record_memory``."""

    content: str
    tags: list[str]
    importance: float
    confidence: float
    priority: float
    context: EventContext
    kind: Literal["memory"] = "memory"


@dataclass
class SkillRecord:
    """Record through ``manager.record_skill_use``."""

    name: str
    success: bool
    category: str
    priority: float
    context: EventContext
    kind: Literal["skill"] = "skill"


@dataclass
class KnowledgeRecord:
    """Record through ``manager.record_knowledge``."""

    content: str
    subject: str | None
    confidence: float
    priority: float
    context: EventContext
    kind: Literal["knowledge"] = "knowledge"


@dataclass
class InteractionRecord:
    """Record through ``manager.record_interaction``."""

    summary: str
    outcome: str | None
    priority: float
    context: EventContext
    extra: dict[str, Any] = field(default_factory=dict)
    kind: Literal["interaction"] = "interaction"


Record = MemoryRecord | SkillRecord | KnowledgeRecord | InteractionRecord


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        value = value[: max(limit - 1, 0)].rstrip() + "\u2026"
    return redact_secrets(value)


def _str(value: Any, limit: int = 200) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    s = str(value).strip()
    return s[:limit] or None


def _strings(value: Any, limit: int, max_items: int = 50) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return []
    out = []
    for item in value[:max_items]:
        text = _text(item, limit)
        if text:
            out.append(text)
    return out


def _context(event: Mapping[str, Any], agent: Mapping[str, Any] | None) -> EventContext:
    env: dict[str, Any] = {"framework": FRAMEWORK}
    if agent:
        for key in ("id", "name"):
            v = _str(agent.get(key))
            if v:
                env[f"eliza_agent_{key}"] = v
    source = _str(event.get("source"))
    if source:
        env["source"] = source
    when = event.get("timestamp")
    if isinstance(when, (int, float)) and not isinstance(when, bool) and when > 0:
        # ElizaOS timestamps are epoch milliseconds.
        env["eliza_timestamp"] = datetime.fromtimestamp(when / 1000, timezone.utc).isoformat()
    return EventContext(
        task_id=_str(event.get("runId")),
        conversation_id=_str(event.get("roomId")),
        trigger=f"{FRAMEWORK}:{_str(event.get('type')) or 'unknown'}",
        environment=env,
    )


def map_event(
    event: Mapping[str, Any],
    agent: Mapping[str, Any] | None = None,
    options: MappingOptions | None = None,
) -> list[Record]:
    """Map one forwarded ElizaOS event to the records it produces (maybe none).

    :param event: the forwarded event (``type`` plus its fields).
    :param agent: the ElizaOS agent it came from (``id``, ``name``), if known.
    :param options: what to keep; defaults to :class:`MappingOptions()`.
    :returns: the records, in the order they should be recorded.
    """
    opts = options or MappingOptions()
    kind = _str(event.get("type"))
    limit = opts.max_text_length
    ctx = _context(event, agent)

    if kind in ("MESSAGE_RECEIVED", "MESSAGE_SENT"):
        if not opts.record_messages:
            return []
        inbound = kind == "MESSAGE_RECEIVED"
        extra: dict[str, Any] = {"direction": "in" if inbound else "out"}
        length = event.get("textLength")
        if isinstance(length, int) and not isinstance(length, bool) and length >= 0:
            extra["text_length"] = length
        actions = [a for a in (_str(x, 100) for x in event.get("actions") or []) if a]
        if actions:
            extra["actions"] = actions[:20]
        text = _text(event.get("text"), limit)  # present only if the plugin opted in
        if text:
            extra["text"] = text
        summary = "message received" if inbound else "message sent"
        return [InteractionRecord(summary=summary, outcome=None, priority=0.3, context=ctx,
                                  extra=extra)]

    if kind == "ACTION_COMPLETED":
        name = _str(event.get("action"))
        if not name:
            return []
        success = event.get("success")
        if not isinstance(success, bool):
            success = _str(event.get("status")) != "failed"
        # A skill event has no place for the error message: it is not sent.
        return [SkillRecord(name=name, success=success, category=opts.skill_category,
                            priority=0.6 if success else 0.7, context=ctx)]

    if kind == "EVALUATOR_COMPLETED":
        evaluator = _str(event.get("evaluator")) or "evaluator"
        facts = _strings(event.get("facts"), limit)
        note = _text(event.get("summary"), limit)
        records: list[Record] = [
            KnowledgeRecord(content=fact, subject=None, confidence=0.7, priority=0.6,
                            context=ctx)
            for fact in facts
        ]
        if note:
            records.append(MemoryRecord(content=note, tags=[FRAMEWORK, "evaluator", evaluator],
                                        importance=0.5, confidence=0.7, priority=0.5,
                                        context=ctx))
        if not records:
            # An evaluator that reports nothing still shows the agent's habit of
            # reflecting, and whether that works: count it as a skill use.
            completed = event.get("completed")
            ok = (completed is not False) and not event.get("error")
            records.append(SkillRecord(name=evaluator, success=ok, category="elizaos-evaluator",
                                       priority=0.5, context=ctx))
        return records

    if kind == "RUN_ENDED":
        status = _str(event.get("status")) or "completed"
        error = _text(event.get("error"), 500)
        outcome = "error" if error else status
        run_extra: dict[str, Any] = {"status": status}
        duration = event.get("durationMs")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            run_extra["duration_ms"] = duration
        if error:
            run_extra["error"] = error
        return [InteractionRecord(summary="run ended", outcome=outcome,
                                  priority=0.3 if outcome == "completed" else 0.6,
                                  context=ctx, extra=run_extra)]

    if kind == "MEMORY_CREATED":
        table = _str(event.get("table")) or "memories"
        if table not in opts.memory_tables:
            return []
        text = _text(event.get("text"), limit)
        if not text:
            return []
        if table in opts.knowledge_tables:
            return [KnowledgeRecord(content=text, subject=None, confidence=0.7, priority=0.6,
                                    context=ctx)]
        tags = [FRAMEWORK, table, *_strings(event.get("tags"), 50, max_items=10)]
        return [MemoryRecord(content=text, tags=list(dict.fromkeys(tags)), importance=0.6,
                             confidence=0.8, priority=0.6, context=ctx)]

    return []


class SkillRates:
    """Success counts per skill name, in memory; the rate is reported as proficiency.

    A skill's observed success rate is the most direct measure of how well an
    instance uses it (the CrewAI and LangChain adapters report the same).
    """

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def observe(self, name: str, success: bool) -> float:
        """Count one use; returns the success rate including it."""
        key = name.casefold()
        with self._lock:
            uses, successes = self._counts.get(key, (0, 0))
            uses, successes = uses + 1, successes + (1 if success else 0)
            self._counts[key] = (uses, successes)
        return successes / uses


def record(manager: Any, instance_id: str, rec: Record, *,
           proficiency: float | None = None) -> None:
    """Record one mapped record through an ``ExperienceSyncManager``.

    :param proficiency: for a skill record, the proficiency to report (the
        skill's success rate so far, see :class:`SkillRates`).
    """
    ctx = rec.context
    source = ctx.environment.get("source")
    if isinstance(rec, MemoryRecord):
        manager.record_memory(instance_id, rec.content, tags=tuple(rec.tags),
                              importance=rec.importance, confidence=rec.confidence,
                              priority=rec.priority, context=ctx)
    elif isinstance(rec, SkillRecord):
        # The skill's contexts list says where it is used: the ElizaOS source
        # (discord, telegram, ...) when known.
        manager.record_skill_use(instance_id, rec.name, success=rec.success,
                                 proficiency=proficiency,
                                 category=rec.category, priority=rec.priority,
                                 context=f"{FRAMEWORK}:{source}" if source else FRAMEWORK)
    elif isinstance(rec, KnowledgeRecord):
        manager.record_knowledge(instance_id, rec.content, subject=rec.subject,
                                 confidence=rec.confidence, priority=rec.priority,
                                 evidence=ctx.trigger)
    else:
        extra = dict(rec.extra)
        # record_interaction takes no context: keep the room, run and source as fields.
        if ctx.conversation_id:
            extra.setdefault("conversation_id", ctx.conversation_id)
        if ctx.task_id:
            extra.setdefault("run_id", ctx.task_id)
        if source:
            extra.setdefault("source", source)
        extra.setdefault("framework", FRAMEWORK)
        manager.record_interaction(instance_id, summary=rec.summary, outcome=rec.outcome,
                                   priority=rec.priority, **extra)
