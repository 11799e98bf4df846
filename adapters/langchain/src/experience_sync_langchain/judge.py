"""An experience-sync merge judge backed by any LangChain chat model.

The hub hands a merge judge the near memory pairs the rules cannot be sure
of (``merge_strategy.judge_zone``, and the rules' name, place and word
swaps); the judge answers ``duplicate``, ``contradiction`` or ``distinct``
and may propose the merged text. Register a chat model under a name and
point the configuration at it::

    from langchain_openai import ChatOpenAI
    from experience_sync_langchain import register_langchain_judge

    register_langchain_judge("gpt-judge", ChatOpenAI(model="gpt-4o-mini", temperature=0))
    # then: merge_strategy.judge = "gpt-judge"

For a hub started from the command line, name the model in
``EXPERIENCE_SYNC_LANGCHAIN_JUDGES`` instead (see
:mod:`experience_sync_langchain.plugin`).

The prompt is :data:`JUDGE_SYSTEM_PROMPT` plus :data:`JUDGE_PAIR_PROMPT`; the
answer is a :class:`JudgeAnswer`. A model that supports structured output
(``with_structured_output``: OpenAI, Anthropic, ...) is asked through it; any
other model is asked for the same JSON object in its text, which is parsed
and validated. An answer that does not validate raises, and the hub then
falls back to its rules for that pair (and counts it).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from experience_sync.api import (
    ExperienceSyncPluginManager,
    JudgedPair,
    MergeJudge,
    Verdict,
    hookimpl,
)
from experience_sync_langchain.registration import register_named, unregister_named

#: What can be registered: a chat model, or a zero-argument callable that
#: makes one (called once, when the hub first needs it).
ChatModelSource = BaseChatModel | Callable[[], BaseChatModel]

PLUGIN_PREFIX = "langchain-judge:"

#: The system message of every judge call.
JUDGE_SYSTEM_PROMPT = """\
You deduplicate the long-term memories of an AI agent. You are shown a memory \
already stored and a new one, and you decide what the new memory is to the stored one:

- "duplicate": both state the same fact, perhaps in other words (a paraphrase, a \
synonym, active or passive voice, a detail that does not change the claim). You may \
give "merged_text": one sentence that says everything either memory says.
- "contradiction": both make the same claim about the same thing with incompatible \
values (a negation, an antonym, another number, date, time, unit, quantity, frequency \
or obligation), so they cannot both be true now.
- "distinct": both can be true at once: they are about different people, places or \
things, or state different facts that do not exclude each other.

When unsure, answer "distinct": keeping a duplicate is cheaper than losing a true fact.
Answer with one JSON object and nothing else:
{"outcome": "duplicate" | "contradiction" | "distinct", "merged_text": string or null, \
"reason": "a short explanation"}"""

#: The human message of a judge call, formatted with the pair.
JUDGE_PAIR_PROMPT = """\
Stored memory: {stored_text}
New memory: {new_text}
Lexical/semantic similarity ({method}): {score:.2f}
A rule-based guess: {rule}"""


class JudgeAnswer(BaseModel):
    """The structured output of a chat model judge (one decision)."""

    outcome: Literal["duplicate", "contradiction", "distinct"] = Field(
        description="duplicate, contradiction or distinct"
    )
    merged_text: str | None = Field(
        default=None,
        description="for a duplicate: one sentence saying everything both memories say",
    )
    reason: str = Field(default="", description="a short explanation")


def render_pair(pair: JudgedPair) -> str:
    """The human message of the judge call for ``pair``."""
    rule = pair.rule_outcome if pair.rule_reason is None else (
        f"{pair.rule_outcome} ({pair.rule_reason})"
    )
    return JUDGE_PAIR_PROMPT.format(
        stored_text=pair.stored_text, new_text=pair.new_text, method=pair.method,
        score=pair.score, rule=rule,
    )


def judge_messages(pair: JudgedPair) -> list[BaseMessage]:
    """The messages a chat model judge is sent for ``pair``."""
    return [SystemMessage(JUDGE_SYSTEM_PROMPT), HumanMessage(render_pair(pair))]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_answer(text: str) -> JudgeAnswer:
    """Read the JSON object of a text answer (code fences and prose around it allowed)."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"the judge's answer holds no JSON object: {text[:200]!r}")
    return JudgeAnswer.model_validate(json.loads(body[start : end + 1]))


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content
            if isinstance(b, (str, dict))
        )
    return str(content)


class LangChainJudge(MergeJudge):
    """Decides near memory pairs with a LangChain chat model.

    :param model: the chat model (or a zero-argument factory of one).
    :param name: the name it is registered under.
    :param structured: ask through ``with_structured_output`` (``None``: when
        the model supports it).
    """

    def __init__(
        self, model: ChatModelSource, *, name: str = "langchain", structured: bool | None = None
    ) -> None:
        self.name = name
        self._source = model
        self._model: BaseChatModel | None = model if isinstance(model, BaseChatModel) else None
        self._structured_choice = structured
        self._structured: Any = None
        self._ready = False
        self._lock = threading.Lock()

    @property
    def model(self) -> BaseChatModel:
        """The chat model, made on first use when a factory was given."""
        with self._lock:
            if self._model is None:
                made = self._source() if callable(self._source) else self._source
                if not isinstance(made, BaseChatModel):
                    raise TypeError(
                        f"chat model factory for judge {self.name!r} returned "
                        f"{type(made).__name__}, not a LangChain BaseChatModel"
                    )
                self._model = made
            return self._model

    def _runnable(self) -> Any:
        """The structured-output runnable, or ``None`` to parse the model's text."""
        model = self.model
        with self._lock:
            if not self._ready:
                if self._structured_choice is not False:
                    try:
                        self._structured = model.with_structured_output(JudgeAnswer)
                    except NotImplementedError:
                        if self._structured_choice:
                            raise
                        self._structured = None
                self._ready = True
            return self._structured

    def answer(self, pair: JudgedPair) -> JudgeAnswer:
        """The model's :class:`JudgeAnswer` for ``pair`` (raises when it does not validate)."""
        messages = judge_messages(pair)
        structured = self._runnable()
        if structured is not None:
            got = structured.invoke(messages)
            if isinstance(got, JudgeAnswer):
                return got
            if isinstance(got, dict):
                return JudgeAnswer.model_validate(got)
            raise ValueError(f"structured output gave {type(got).__name__}")
        return parse_answer(_text(self.model.invoke(messages)))

    def judge(self, pair: JudgedPair) -> Verdict:
        """Ask the model about ``pair``."""
        got = self.answer(pair)
        merged = got.merged_text.strip() if got.merged_text else None
        return Verdict(got.outcome, merged if got.outcome == "duplicate" else None, got.reason)


class LangChainJudgePlugin:
    """A plugin that registers one LangChain chat model as a named merge judge."""

    def __init__(
        self, name: str, model: ChatModelSource, structured: bool | None = None
    ) -> None:
        self.name = name
        self.model = model
        self.structured = structured
        self._judge: LangChainJudge | None = None
        self._lock = threading.Lock()

    def make_judge(self, config: Any = None) -> LangChainJudge:
        """The judge (one per plugin, shared by every agent's merges)."""
        with self._lock:
            if self._judge is None:
                self._judge = LangChainJudge(self.model, name=self.name, structured=self.structured)
            return self._judge

    @hookimpl
    def experience_sync_register_merge_judges(self, register: Callable[..., None]) -> None:
        """Register the chat model under this plugin's name."""
        register(self.name, self.make_judge)


def register_langchain_judge(
    name: str,
    model: ChatModelSource,
    *,
    structured: bool | None = None,
    plugin_manager: ExperienceSyncPluginManager | None = None,
) -> str:
    """Make a LangChain chat model available as the merge judge ``name``.

    Registers a small plugin with the process-wide plugin manager (or the one
    given), so that ``merge_strategy.judge = name`` validates and the hub asks
    the model about the pairs of its judge zone. Registering a name twice is
    an error naming both plugins, like any other clash.

    :param structured: force (``True``) or avoid (``False``) the model's
        ``with_structured_output``; by default it is used when the model has it.
    :returns: the plugin name, for :func:`unregister_langchain_judge`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a judge name is required")
    if not isinstance(model, BaseChatModel) and not callable(model):
        raise TypeError("model must be a LangChain BaseChatModel or a factory of one")
    return register_named(
        LangChainJudgePlugin(name, model, structured),
        PLUGIN_PREFIX + name,
        f"a LangChain chat model is already registered as merge judge {name!r}; "
        "unregister_langchain_judge() it first",
        plugin_manager,
    )


def unregister_langchain_judge(
    name: str, *, plugin_manager: ExperienceSyncPluginManager | None = None
) -> None:
    """Remove a judge registered with :func:`register_langchain_judge`."""
    unregister_named(PLUGIN_PREFIX + name, plugin_manager)
