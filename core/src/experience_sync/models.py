"""The data model, which is also the wire format.

Every model here is what travels between an instance and the hub, and what the
hub's read endpoints answer with. ``schema_version`` is carried by the
top-level messages (events, batches, check-ins, merge results, agent state) so
that clients in other languages can validate against ``experience-sync schema``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails

SCHEMA_VERSION = "1.0"

EventType = Literal["memory", "skill", "knowledge", "characteristic", "interaction"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
#: The largest count the wire carries (a signed 64-bit integer, what clients in
#: most languages and SQLite hold); larger is refused.
MAX_COUNT = 2**63 - 1
#: A count an instance reports about itself: 0 to :data:`MAX_COUNT`.
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]

#: How deeply a free-form value (a characteristic's value, an interaction's
#: fields, an environment) may nest. Deeper values are refused (422): JSON
#: serializers stop at about 255 levels for a whole message, and the value is
#: stored and answered inside other objects.
MAX_JSON_DEPTH = 64

# ---------------------------------------------------------------- field caps
# Every free-text and list field of a wire message has a cap, here and only
# here: the hub refuses a longer field with a 422 naming it, and an instance
# building the same models refuses it when the experience is recorded.
# docs/wire-protocol.md ("Field caps") lists them.

#: Characters of a memory's or knowledge item's ``content`` (and of an
#: interaction's ``summary``, a knowledge item's ``evidence``).
MAX_CONTENT = 100_000
#: Characters of an id: ``event_id``, ``instance_id``, ``batch_id``, ...
MAX_ID = 200
#: Characters of a name or key: skill ``name``, characteristic ``key``, a
#: knowledge ``subject``, an environment or interaction key.
MAX_NAME = 500
#: Characters of a short label: ``memory_type``, ``category``, ``trigger``,
#: ``outcome``, ``schema_version``, one tag, one skill context.
MAX_LABEL_TEXT = 200
#: Items of a list of labels: a memory's ``tags``, a skill's ``usage.contexts``.
MAX_TAGS = 100
#: Numbers in a memory's ``embedding``.
MAX_EMBEDDING = 8192
#: Bytes of one free-form value as compact JSON: a characteristic's ``value``,
#: one ``context.environment`` entry, all of an interaction's extra fields together.
MAX_FREE_JSON_BYTES = 100_000
#: Entries of a free-form mapping: ``context.environment``, an interaction's
#: extra fields.
MAX_FREE_KEYS = 100
#: Items of each list of a check-in's full ``state`` (memories, skills,
#: knowledge) and keys of its ``characteristics``.
MAX_STATE_ITEMS = 100_000
#: Events in one streaming request (a batch or check-in may carry :data:`MAX_UNIT_EVENTS`).
MAX_REQUEST_EVENTS = 10_000
#: Events in one batch or check-in.
MAX_UNIT_EVENTS = 100_000


def _as_utc(value: datetime) -> datetime:
    # The wire format asks for a timezone; one without is read as UTC, since
    # naive and aware timestamps cannot be compared while merging. Any other
    # offset is converted, so every timestamp the hub answers is UTC (``Z``).
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if value.tzinfo is timezone.utc:
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is outside years 1-9999 once converted to UTC") from None


def wire_time(value: datetime) -> str:
    """``value`` as the wire writes timestamps: RFC 3339 in UTC with ``Z``."""
    text = _as_utc(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests lists and objects more than ``limit`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (values JSON cannot hold count by their ``repr``)."""
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return len(repr(value))


def _shallow(value: Any) -> Any:
    if json_depth_exceeds(value):
        raise ValueError(f"value nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, (dict, list, str)) and json_size(value) > MAX_FREE_JSON_BYTES:
        raise ValueError(f"value is larger than {MAX_FREE_JSON_BYTES} bytes as JSON")
    return value


#: A timestamp; one without a timezone is taken as UTC, any other offset is converted to UTC.
Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
#: A free-form JSON value nested at most :data:`MAX_JSON_DEPTH` levels and at
#: most :data:`MAX_FREE_JSON_BYTES` bytes as JSON.
FreeJson = Annotated[Any, AfterValidator(_shallow)]
#: A short label (:data:`MAX_LABEL_TEXT` characters).
Label = Annotated[str, Field(max_length=MAX_LABEL_TEXT)]
#: A name or key (:data:`MAX_NAME` characters).
Name = Annotated[str, Field(max_length=MAX_NAME)]
#: One tag of a memory (or of a search), at most :data:`MAX_LABEL_TEXT` characters.
Tag = Annotated[str, Field(max_length=MAX_LABEL_TEXT)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A new random identifier (UUID4 hex string)."""
    return uuid.uuid4().hex


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- events


class EventContext(_Model):
    """Where an experience happened."""

    task_id: str | None = Field(default=None, max_length=MAX_ID)
    conversation_id: str | None = Field(default=None, max_length=MAX_ID)
    trigger: Label | None = None
    environment: dict[Name, FreeJson] = Field(default_factory=dict, max_length=MAX_FREE_KEYS)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold it, and no id or key needs it.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


#: An id or key: stored as it is, so it may not hold the NUL character.
IdText = Annotated[str, AfterValidator(_no_nul)]


class MemoryData(_Model):
    """Payload of a ``memory`` event."""

    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    memory_id: IdText | None = Field(default=None, max_length=MAX_ID)
    memory_type: Label = "episodic"
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    importance: Unit = 0.5
    confidence: Unit = 0.8
    embedding: list[float] | None = Field(default=None, max_length=MAX_EMBEDDING)


class SkillUsageReport(_Model):
    """An instance's cumulative usage of one skill, as of the event.

    Reports are cumulative so that re-sending one never doubles a count: the
    hub keeps each instance's latest report and sums across instances.
    """

    invocations: int = Field(default=0, ge=0)
    successes: int = Field(default=0, ge=0)
    contexts: list[Label] = Field(default_factory=list, max_length=MAX_TAGS)
    last_used: Timestamp | None = None

    @model_validator(mode="after")
    def _successes_bounded(self) -> SkillUsageReport:
        if self.successes > self.invocations:
            raise ValueError("successes cannot exceed invocations")
        return self


class SkillData(_Model):
    """Payload of a ``skill`` event."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    skill_id: IdText | None = Field(default=None, max_length=MAX_ID)
    category: Label = "general"
    proficiency: Unit | None = None
    usage: SkillUsageReport = Field(default_factory=SkillUsageReport)


class KnowledgeData(_Model):
    """Payload of a ``knowledge`` event.

    Items with the same ``knowledge_id`` (else the same normalized ``subject``,
    else the same normalized content) are the same piece of knowledge; the
    same key with different content is a conflict.
    """

    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    knowledge_id: IdText | None = Field(default=None, max_length=MAX_ID)
    subject: Name | None = None
    confidence: Unit = 0.7
    evidence: str | None = Field(default=None, max_length=MAX_CONTENT)


#: A characteristic's key, in an event's ``data.key`` or a check-in's ``state.characteristics``.
CharacteristicKey = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_no_nul)]


class CharacteristicData(_Model):
    """Payload of a ``characteristic`` event: a named trait or preference."""

    key: CharacteristicKey
    value: FreeJson = None
    confidence: Unit = 0.7


class InteractionData(BaseModel):
    """Payload of an ``interaction`` event. Extra fields are kept as given."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, FreeJson]

    summary: str | None = Field(default=None, max_length=MAX_CONTENT)
    outcome: Label | None = None

    @model_validator(mode="after")
    def _extras_bounded(self) -> InteractionData:
        extra = self.__pydantic_extra__ or {}
        if len(extra) > MAX_FREE_KEYS:
            raise ValueError(f"at most {MAX_FREE_KEYS} extra fields")
        long_key = next((k for k in extra if len(k) > MAX_NAME), None)
        if long_key is not None:
            raise ValueError(f"an extra field's name is longer than {MAX_NAME} characters")
        if extra and json_size(extra) > MAX_FREE_JSON_BYTES:
            raise ValueError(f"the extra fields are larger than {MAX_FREE_JSON_BYTES} bytes as JSON")
        return self


EventData = MemoryData | SkillData | KnowledgeData | CharacteristicData | InteractionData

_DATA_MODELS: dict[str, type[BaseModel]] = {
    "memory": MemoryData,
    "skill": SkillData,
    "knowledge": KnowledgeData,
    "characteristic": CharacteristicData,
    "interaction": InteractionData,
}


#: Validation context of a message received over the wire (``model_validate(...,
#: context=WIRE)``): an event must then carry its ``event_id`` and ``timestamp``.
#: Without an id a retried event could not be recognised and would merge twice;
#: without a timestamp the hub would date it by its own clock, and merges are
#: ordered by event time. Python callers keep the defaults (a new id, now).
WIRE: dict[str, bool] = {"wire": True}
WIRE_REQUIRED_EVENT_FIELDS = ("event_id", "timestamp")


def _require_on_wire(schema: dict[str, Any]) -> None:
    # The published schema describes messages on the wire.
    required = schema.setdefault("required", [])
    required.extend(f for f in WIRE_REQUIRED_EVENT_FIELDS if f not in required)


class ExperienceEvent(_Model):
    """One experience recorded by an instance."""

    model_config = ConfigDict(json_schema_extra=_require_on_wire)

    schema_version: Label = SCHEMA_VERSION
    event_id: IdText = Field(default_factory=new_id, min_length=1, max_length=MAX_ID)
    timestamp: Timestamp = Field(default_factory=utcnow)
    source_instance: IdText = Field(min_length=1, max_length=MAX_ID)
    agent_id: IdText | None = Field(default=None, max_length=MAX_ID)
    event_type: EventType
    priority: Unit = 0.5
    data: EventData
    context: EventContext = Field(default_factory=EventContext)
    sequence: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Per-instance sequence number."
    )
    lamport: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Lamport clock of the instance."
    )

    @model_validator(mode="before")
    @classmethod
    def _validate_data_by_type(cls, values: Any, info: ValidationInfo) -> Any:
        # Validate ``data`` against the model of its event type, so that a
        # memory without content fails with the path ``data.content``.
        if isinstance(values, dict):
            if info.context is not None and info.context.get("wire"):
                missing = [f for f in WIRE_REQUIRED_EVENT_FIELDS if f not in values]
                if missing:
                    raise ValidationError.from_exception_data(
                        cls.__name__,
                        [{"type": "missing", "loc": (f,), "input": values} for f in missing],
                    )
            kind = values.get("event_type")
            data = values.get("data")
            model = _DATA_MODELS.get(kind) if isinstance(kind, str) else None
            if model is not None and "data" in values and not isinstance(data, (dict, BaseModel)):
                # One error at ``data``, not one per member of the EventData union.
                raise ValidationError.from_exception_data(
                    cls.__name__, [{"type": "dict_type", "loc": ("data",), "input": data}]
                )
            if model is not None and isinstance(data, dict):
                values = dict(values)
                try:
                    values["data"] = model.model_validate(data)
                except ValidationError as exc:
                    # Re-raise under ``data`` so the path reads ``data.content``.
                    details: list[InitErrorDetails] = []
                    for err in exc.errors():
                        detail: InitErrorDetails = {
                            "type": err["type"],
                            "loc": ("data", *err["loc"]),
                            "input": err["input"],
                        }
                        if "ctx" in err:
                            detail["ctx"] = err["ctx"]
                        details.append(detail)
                    raise ValidationError.from_exception_data(model.__name__, details) from None
            elif model is not None and isinstance(data, BaseModel) and not isinstance(data, model):
                raise ValueError(f"data does not match event_type {kind!r}")
        return values

    @property
    def memory(self) -> MemoryData:
        """The data of a ``memory`` event (an ``AssertionError`` for another type)."""
        assert isinstance(self.data, MemoryData)
        return self.data

    @property
    def skill(self) -> SkillData:
        """The data of a ``skill`` event (an ``AssertionError`` for another type)."""
        assert isinstance(self.data, SkillData)
        return self.data

    @property
    def knowledge(self) -> KnowledgeData:
        """The data of a ``knowledge`` event (an ``AssertionError`` for another type)."""
        assert isinstance(self.data, KnowledgeData)
        return self.data


EventList = TypeAdapter(list[ExperienceEvent])


class EventsRequest(_Model):
    """Body of ``POST /v1/agents/{agent_id}/events`` (streaming)."""

    instance_id: IdText = Field(min_length=1, max_length=MAX_ID)
    events: list[ExperienceEvent] = Field(max_length=MAX_REQUEST_EVENTS)


class ExperienceBatch(_Model):
    """Body of ``POST /v1/agents/{agent_id}/batches`` (lumped)."""

    schema_version: Label = SCHEMA_VERSION
    batch_id: IdText = Field(default_factory=new_id, min_length=1, max_length=MAX_ID)
    instance_id: IdText = Field(min_length=1, max_length=MAX_ID)
    agent_id: IdText | None = Field(default=None, max_length=MAX_ID)
    timestamp_start: Timestamp
    timestamp_end: Timestamp
    events: list[ExperienceEvent] = Field(max_length=MAX_UNIT_EVENTS)
    compression: Literal["none", "gzip", "zstd"] = "none"


# --------------------------------------------------------------------------- check-ins


class InstanceStats(_Model):
    """Counters an instance keeps about itself."""

    events_recorded: Count = 0
    events_delivered: Count = 0
    events_filtered: Count = 0
    events_refused: Count = 0


class InstanceState(_Model):
    """An instance's full local state, sent by a check-in with ``include_full_state``."""

    memories: list[MemoryData] = Field(default_factory=list, max_length=MAX_STATE_ITEMS)
    skills: list[SkillData] = Field(default_factory=list, max_length=MAX_STATE_ITEMS)
    knowledge: list[KnowledgeData] = Field(default_factory=list, max_length=MAX_STATE_ITEMS)
    # Its keys become characteristic events' keys: the same limits apply.
    characteristics: dict[CharacteristicKey, FreeJson] = Field(
        default_factory=dict, max_length=MAX_STATE_ITEMS
    )
    stats: InstanceStats = Field(default_factory=InstanceStats)


class InstanceSummary(_Model):
    """What a check-in without full state carries: counts and the last sequence."""

    memories: Count = 0
    skills: Count = 0
    knowledge: Count = 0
    last_sequence: Count = 0
    stats: InstanceStats = Field(default_factory=InstanceStats)


class CheckIn(_Model):
    """Body of ``POST /v1/agents/{agent_id}/checkins``."""

    schema_version: Label = SCHEMA_VERSION
    checkin_id: IdText = Field(default_factory=new_id, min_length=1, max_length=MAX_ID)
    instance_id: IdText = Field(min_length=1, max_length=MAX_ID)
    agent_id: IdText | None = Field(default=None, max_length=MAX_ID)
    timestamp: Timestamp = Field(default_factory=utcnow)
    uptime_seconds: float = Field(default=0.0, ge=0)
    events: list[ExperienceEvent] = Field(default_factory=list, max_length=MAX_UNIT_EVENTS)
    state: InstanceState | None = None
    summary: InstanceSummary | None = None


# --------------------------------------------------------------------------- merge results


class ConflictCounts(_Model):
    """A request's conflicts: all of them, those the strategy resolved, those queued for review."""

    total: int = 0
    resolved: int = 0
    queued: int = 0


#: What a new memory is against its best stored candidate (``docs/merging.md``):
#: ``duplicate`` (merged into it), ``contradiction`` (the same claim with an
#: incompatible value: the conflict strategy decides) or ``distinct`` (related
#: but compatible, or undecidable: kept as its own memory).
MergeOutcome = Literal["duplicate", "contradiction", "distinct"]


class OutcomeCounts(_Model):
    """How many of a request's new memories were each :data:`MergeOutcome`.

    A memory with no near candidate at all counts as ``distinct``.
    """

    duplicate: int = 0
    contradiction: int = 0
    distinct: int = 0


class MemoryOutcome(_Model):
    """One new memory that had a near stored candidate, and what it was against it.

    :param memory_id: the stored memory it merged into (``duplicate``), contradicted
        (``contradiction``), or the memory added for it (``distinct``).
    :param related_to: for ``distinct``, the near memory it was kept apart from.
    :param reason: why the guards kept it apart (``negation``, ``number``, ``unit``,
        ``date``, ``quantifier``, ``modality``, ``antonym``, ``name``, ``word``),
        ``None`` for a duplicate.
    """

    event_id: str
    outcome: MergeOutcome
    memory_id: str | None = None
    related_to: str | None = None
    reason: str | None = None


#: The per-kind counters of a :class:`MergeResult`, in the order they are declared.
MERGE_COUNTS: tuple[str, ...] = (
    "events_received",
    "memories_added",
    "memories_merged",
    "skills_added",
    "skills_updated",
    "knowledge_added",
    "knowledge_verified",
    "knowledge_integrated",
    "characteristics_updated",
    "interactions_recorded",
)


class MergeResult(_Model):
    """What the hub did with one request, answered only after it is committed."""

    schema_version: str = SCHEMA_VERSION
    agent_id: str = ""
    unit_id: str | None = Field(default=None, description="batch_id or checkin_id, if any")
    duplicate: bool = Field(default=False, description="The whole unit was already applied.")
    events_received: int = 0
    memories_added: int = 0
    memories_merged: int = 0
    skills_added: int = 0
    skills_updated: int = 0
    knowledge_added: int = 0
    knowledge_verified: int = 0
    knowledge_integrated: int = 0
    characteristics_updated: int = 0
    interactions_recorded: int = 0
    accepted_event_ids: list[str] = Field(default_factory=list)
    duplicate_event_ids: list[str] = Field(default_factory=list)
    conflicts: ConflictCounts = Field(default_factory=ConflictCounts)
    cursor: int = 0
    outcomes: OutcomeCounts = Field(
        default_factory=OutcomeCounts, description="New memories per merge outcome."
    )
    memory_outcomes: list[MemoryOutcome] = Field(
        default_factory=list,
        description="Each new memory that had a near stored candidate, with its outcome.",
    )

    def add(self, other: MergeResult) -> None:
        """Accumulate another result's counts into this one."""
        for name in MERGE_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.accepted_event_ids.extend(other.accepted_event_ids)
        self.duplicate_event_ids.extend(other.duplicate_event_ids)
        self.conflicts.total += other.conflicts.total
        self.conflicts.resolved += other.conflicts.resolved
        self.conflicts.queued += other.conflicts.queued
        self.outcomes.duplicate += other.outcomes.duplicate
        self.outcomes.contradiction += other.outcomes.contradiction
        self.outcomes.distinct += other.outcomes.distinct
        self.memory_outcomes.extend(other.memory_outcomes)
        self.cursor = max(self.cursor, other.cursor)


# --------------------------------------------------------------------------- source agent state


class SupersededStatement(_Model):
    """A statement a memory no longer holds: it lost a conflict with the memory's content.

    ``event_id``, ``instance_id`` and ``timestamp`` identify the report of that
    statement (for the stored side: its latest report when it was replaced).
    """

    content: str
    instance_id: str
    event_id: str
    timestamp: Timestamp


class Memory(_Model):
    """A merged memory of the source agent.

    ``superseded`` lists the statements that lost a conflict with this memory
    (oldest first, the latest few kept), so a change of content stays visible.
    """

    memory_id: str
    content: str
    normalized_hash: str
    memory_type: str = "episodic"
    tags: list[str] = Field(default_factory=list)
    importance: Unit = 0.5
    confidence: Unit = 0.8
    access_count: int = 1
    source_instances: list[str] = Field(default_factory=list)
    source_events: list[str] = Field(default_factory=list)
    created_at: Timestamp
    updated_at: Timestamp
    version: int = 0
    superseded: list[SupersededStatement] = Field(default_factory=list)
    #: A near memory this one was kept apart from as ``distinct`` (another
    #: name, place or thing in the same frame), if any.
    related_to: str | None = None


class LearningCurvePoint(_Model):
    """A skill's aggregated proficiency after the report (``event``, its id) that changed it."""

    timestamp: Timestamp
    proficiency: Unit
    event: str


class SkillUsage(_Model):
    """A skill's use summed over the instances' latest reports."""

    total_invocations: int = 0
    success_rate: Unit = 0.0
    contexts: list[str] = Field(default_factory=list)
    last_used: Timestamp | None = None


class InstanceSkillReport(_Model):
    """The latest report of one instance about one skill."""

    proficiency: Unit | None = None
    invocations: int = 0
    successes: int = 0
    timestamp: Timestamp
    lamport: int = 0
    event_id: str = ""


class Skill(_Model):
    """A skill of the source agent, accumulated over instances."""

    skill_id: str
    name: str
    category: str = "general"
    proficiency: Unit = 0.0
    acquired: Timestamp
    source_instances: list[str] = Field(default_factory=list)
    learning_curve: list[LearningCurvePoint] = Field(default_factory=list)
    usage: SkillUsage = Field(default_factory=SkillUsage)
    per_instance: dict[str, InstanceSkillReport] = Field(default_factory=dict)
    version: int = 0


class Verification(_Model):
    """One instance's verification of a knowledge item: its latest report about it."""

    instance_id: str
    confidence: Unit
    event_id: str
    timestamp: Timestamp


class KnowledgeAlternative(_Model):
    """Another value reported for a knowledge item, kept while fewer instances verify it.

    Its ``verifications`` are the instances whose latest report about the item
    says this content; it replaces the item's content once more instances
    verify it than verify the content (``docs/merging.md``, "Knowledge under dissent").
    """

    content: str
    confidence: Unit = 0.0
    verifications: dict[str, Verification] = Field(default_factory=dict)


class KnowledgeItem(_Model):
    """A piece of knowledge, pending until verified by enough distinct instances."""

    knowledge_id: str
    key: str
    subject: str | None = None
    content: str
    confidence: Unit = 0.0
    status: Literal["pending", "integrated"] = "pending"
    verifications: dict[str, Verification] = Field(default_factory=dict)
    first_seen: Timestamp
    integrated_at: Timestamp | None = None
    version: int = 0
    #: Dissenting values, most verified first: never integrated while they stand apart.
    alternatives: list[KnowledgeAlternative] = Field(default_factory=list)


class Characteristic(_Model):
    """A merged characteristic of the source agent: its value, confidence and last source."""

    key: str
    value: Any = None
    confidence: Unit = 0.7
    source_instance: str = ""
    updated_at: Timestamp
    version: int = 0


class Review(_Model):
    """A conflict queued for manual review: nothing is applied until it is decided."""

    review_id: str
    kind: Literal["memory", "skill", "knowledge", "characteristic"]
    key: str
    current: dict[str, Any]
    proposed: dict[str, Any]
    event_id: str
    instance_id: str
    status: Literal["open", "accepted", "rejected"] = "open"
    created_at: Timestamp
    decided_at: Timestamp | None = None
    version: int = 0


class EvolutionStats(_Model):
    """Counts of how the source agent evolved: requests merged, events, and what it holds."""

    total_syncs: int = 0
    total_events: int = 0
    interactions: int = 0
    memories: int = 0
    skills_learned: int = 0
    knowledge_acquired: int = 0
    last_evolution: Timestamp | None = None


class InstanceStatus(_Model):
    """What the hub knows about one instance of an agent."""

    instance_id: str
    last_sync: Timestamp | None = None
    last_sequence: int = 0
    lag_seconds: float | None = None
    backlog: int | None = None
    protocol: str | None = None
    transport: str | None = None
    total_events: int = 0


class AgentState(_Model):
    """The source agent as the hub holds it (or the part changed since a cursor)."""

    schema_version: str = SCHEMA_VERSION
    agent_id: str
    cursor: int = 0
    memories: list[Memory] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    knowledge: list[KnowledgeItem] = Field(default_factory=list)
    characteristics: dict[str, Characteristic] = Field(default_factory=dict)
    reviews: list[Review] = Field(default_factory=list)
    stats: EvolutionStats = Field(default_factory=EvolutionStats)
    reset: bool = Field(
        default=False,
        description="The answer is the whole state and replaces what the caller holds: a "
        "forget since the caller's cursor removed items (drop every item not listed).",
    )


class ObservabilityEvent(_Model):
    """What observers receive: ``sync.*``, ``merge.*``, ``hub.*`` and ``review.*`` events."""

    type: str
    timestamp: Timestamp = Field(default_factory=utcnow)
    agent_id: str | None = None
    instance_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "ExperienceEvent": ExperienceEvent,
    "EventsRequest": EventsRequest,
    "ExperienceBatch": ExperienceBatch,
    "CheckIn": CheckIn,
    "MergeResult": MergeResult,
    "AgentState": AgentState,
    "ObservabilityEvent": ObservabilityEvent,
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every wire model, keyed by model name."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "experience-sync wire format",
        "schema_version": SCHEMA_VERSION,
        "models": {name: model.model_json_schema() for name, model in WIRE_MODELS.items()},
    }
