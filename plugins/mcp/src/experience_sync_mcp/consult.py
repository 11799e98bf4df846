"""What the consulting tools take and answer: ``search_experiences`` and ``get_source_agent``.

An MCP client (a model-driven agent, an IDE, another framework) consults the
source agent with two calls: a ranked search for what is relevant to the task
at hand, and a summary of who the agent is (what it knows for sure, which
tools it uses and how reliably). Arguments are validated here rather than by
the SDK so every bad value is a ``[422] <field>: <reason>`` tool error, like
the hub's HTTP routes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experience_sync.api import (
    AgentState,
    KnowledgeItem,
    SearchQuery,
    SearchResults,
    Skill,
    render_hits,
    skill_reliability,
)

__all__ = [
    "KnowledgeLine",
    "SkillLine",
    "SourceAgent",
    "SourceAgentCounts",
    "SourceAgentQuery",
    "ToolArgumentError",
    "parse_search",
    "parse_source_agent",
    "search_text",
    "summarize",
    "summary_text",
]

#: The JSON Schemas the tools advertise for the arguments validated here.
SEARCH_SCHEMAS: dict[str, dict[str, Any]] = {
    "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
          "description": "How many hits (1-100)."},
    "kinds": {
        "anyOf": [
            {"type": "array", "items": {"enum": ["memory", "knowledge", "skill"]}},
            {"type": "string"},
        ],
        "default": None,
        "description": "Which kinds to search: a list, or comma-separated text, of "
        "memory, knowledge, skill (default: all three).",
    },
    "tags": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
        "default": None,
        "description": "Only memories carrying every one of these tags (a list or "
        "comma-separated text); knowledge and skills have no tags.",
    },
    "min_confidence": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}],
                       "default": None, "description": "Only items at least this confident (0-1)."},
    "knowledge_status": {
        "enum": ["integrated", "pending", "all"],
        "default": "integrated",
        "description": "integrated (default): knowledge enough instances verified; "
        "pending: only the rest; all: both.",
    },
}

SOURCE_AGENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "full": {"type": "boolean", "default": False,
             "description": "Also return the whole merged AgentState under `state`."},
    "top_skills": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10,
                   "description": "How many skills to list, most used first (0-100)."},
    "max_knowledge": {"type": "integer", "minimum": 0, "maximum": 500, "default": 20,
                      "description": "How many integrated knowledge items to list, "
                      "most confident first (0-500)."},
}


class ToolArgumentError(ValueError):
    """A tool argument is invalid: ``field`` and ``reason`` make the ``[422]`` text."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _first_error(exc: ValidationError) -> ToolArgumentError:
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "(arguments)"
    return ToolArgumentError(field, str(err["msg"]))


def _split(value: Any) -> Any:
    # Comma-separated text as the GET route takes it; anything else is left
    # for the model to refuse with its own reason.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def parse_search(
    q: str,
    k: Any = 5,
    kinds: Any = None,
    tags: Any = None,
    min_confidence: Any = None,
    knowledge_status: Any = "integrated",
) -> SearchQuery:
    """The :class:`SearchQuery` of the tool's arguments, or :class:`ToolArgumentError`."""
    fields: dict[str, Any] = {"q": q, "k": k, "tags": [] if tags is None else _split(tags),
                              "min_confidence": min_confidence,
                              "knowledge_status": knowledge_status}
    if kinds is not None:
        fields["kinds"] = _split(kinds)
    try:
        return SearchQuery.model_validate(fields)
    except ValidationError as exc:
        raise _first_error(exc) from None


def search_text(results: SearchResults) -> str:
    """The text block of a search: the hits' own words as bullets (skills as a reliability line)."""
    text = render_hits(results.hits, max_chars=100_000)
    return text or f"Nothing the source agent learned matches {results.query.q!r}."


class SourceAgentQuery(BaseModel):
    """The options of ``get_source_agent`` (see :data:`SOURCE_AGENT_SCHEMAS`)."""

    model_config = ConfigDict(extra="forbid")

    full: bool = False
    top_skills: int = Field(default=10, ge=0, le=100)
    max_knowledge: int = Field(default=20, ge=0, le=500)


def parse_source_agent(full: Any = False, top_skills: Any = 10, max_knowledge: Any = 20) -> SourceAgentQuery:
    """The :class:`SourceAgentQuery` of the tool's arguments, or :class:`ToolArgumentError`."""
    try:
        return SourceAgentQuery.model_validate(
            {"full": full, "top_skills": top_skills, "max_knowledge": max_knowledge}
        )
    except ValidationError as exc:
        raise _first_error(exc) from None


class SourceAgentCounts(BaseModel):
    """How much the source agent holds."""

    memories: int = 0
    skills: int = 0
    knowledge_integrated: int = 0
    knowledge_pending: int = 0
    characteristics: int = 0
    open_reviews: int = 0
    instances: int = 0


class KnowledgeLine(BaseModel):
    """An integrated knowledge item: its words, confidence and how many instances verified it."""

    knowledge_id: str
    subject: str | None = None
    content: str
    text: str
    confidence: float
    verifications: int


class SkillLine(BaseModel):
    """A skill and how reliable it has been across the fleet."""

    skill_id: str
    name: str
    category: str
    proficiency: float
    total_invocations: int
    success_rate: float
    reliability: str = Field(description="A prompt line: 'name: succeeded in N% of M uses ...'.")


class SourceAgent(BaseModel):
    """What ``get_source_agent`` answers (structured content).

    :param counts: memories, skills, knowledge (integrated / pending),
        characteristics, open reviews and instances.
    :param knowledge: integrated knowledge, most confident first (at most
        ``max_knowledge``); pending knowledge is only counted.
    :param skills: skills, most used first (at most ``top_skills``).
    :param characteristics: every merged characteristic, key to value.
    :param state: the whole ``AgentState`` when ``full`` was asked, else null.
    """

    agent_id: str
    cursor: int
    counts: SourceAgentCounts
    stats: dict[str, Any] = Field(default_factory=dict)
    characteristics: dict[str, Any] = Field(default_factory=dict)
    knowledge: list[KnowledgeLine] = Field(default_factory=list)
    skills: list[SkillLine] = Field(default_factory=list)
    state: AgentState | None = None


def _knowledge_line(item: KnowledgeItem) -> KnowledgeLine:
    text = item.content
    if item.subject and item.subject.casefold() not in text.casefold():
        text = f"{item.subject}: {text}"
    return KnowledgeLine(
        knowledge_id=item.knowledge_id,
        subject=item.subject,
        content=item.content,
        text=" ".join(text.split()),
        confidence=item.confidence,
        verifications=len(item.verifications),
    )


def _skill_line(skill: Skill) -> SkillLine:
    return SkillLine(
        skill_id=skill.skill_id,
        name=skill.name,
        category=skill.category,
        proficiency=skill.proficiency,
        total_invocations=skill.usage.total_invocations,
        success_rate=skill.usage.success_rate,
        reliability=skill_reliability(skill.model_dump(mode="json")),
    )


def summarize(state: AgentState, instances: int, query: SourceAgentQuery) -> SourceAgent:
    """The summary of a merged ``state`` for ``get_source_agent``."""
    integrated = [k for k in state.knowledge if k.status == "integrated"]
    integrated.sort(key=lambda k: (-k.confidence, -len(k.verifications), k.knowledge_id))
    skills = sorted(
        state.skills,
        key=lambda s: (-s.usage.total_invocations, -s.proficiency, s.name.casefold(), s.skill_id),
    )
    counts = SourceAgentCounts(
        memories=len(state.memories),
        skills=len(state.skills),
        knowledge_integrated=len(integrated),
        knowledge_pending=len(state.knowledge) - len(integrated),
        characteristics=len(state.characteristics),
        open_reviews=sum(1 for r in state.reviews if r.status == "open"),
        instances=instances,
    )
    return SourceAgent(
        agent_id=state.agent_id,
        cursor=state.cursor,
        counts=counts,
        stats=state.stats.model_dump(mode="json"),
        characteristics={k: c.value for k, c in sorted(state.characteristics.items())},
        knowledge=[_knowledge_line(k) for k in integrated[: query.max_knowledge]],
        skills=[_skill_line(s) for s in skills[: query.top_skills]],
        state=state if query.full else None,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_text(summary: SourceAgent) -> str:
    """The text block of ``get_source_agent``: counts, then knowledge, skills and characteristics."""
    c = summary.counts
    lines = [
        f"Source agent {summary.agent_id}: {c.memories} {'memory' if c.memories == 1 else 'memories'}, "
        f"{_plural(c.skills, 'skill')}, {c.knowledge_integrated} integrated knowledge "
        f"({c.knowledge_pending} pending verification), from {_plural(c.instances, 'instance')}."
    ]
    if summary.knowledge:
        lines.append("What it knows (verified across the fleet):")
        lines += [f"- {k.text}" for k in summary.knowledge]
    if summary.skills:
        lines.append("Its skills:")
        lines += [f"- {s.reliability}" for s in summary.skills]
    if summary.characteristics:
        lines.append("Its characteristics:")
        lines += [f"- {key}: {value}" for key, value in summary.characteristics.items()]
    return "\n".join(lines)
