"""The LangChain adapter against real LangChain runs and a real hub on loopback.

The agent is a real langchain-core loop: a chat model with tools bound, real
``@tool`` tools and a retriever, invoked with the adapter's callback handler.
The model is a ``GenericFakeChatModel`` that answers scripted tool calls, so
nothing leaves the machine. Each test ends at the hub: it pulls the source
agent's merged state and checks the skills, memories and knowledge there.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from experience_sync_langchain import (
    AsyncExperienceSyncCallbackHandler,
    ExperienceSyncCallbackHandler,
    LangChainEmbedder,
    register_langchain_embeddings,
    unregister_langchain_embeddings,
)
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, chain
from langchain_core.tools import BaseTool, ToolException, tool

from experience_sync import hookimpl
from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.config import validate_config
from experience_sync.errors import PluginError
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import AgentState, ExperienceEvent
from experience_sync.plugins import get_plugin_manager

AGENT = "travel-agent"
SECRET = "my card number is 4111-1111-1111-1111"

# --------------------------------------------------------------------------- the agent


class ToolCallingFakeModel(GenericFakeChatModel):
    """The fake chat model, able to stand where a tool-calling model is bound."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:  # type: ignore[override]
        return self


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def book_hotel(city: str) -> str:
    """Book a hotel (the booking service is down)."""
    raise ToolException("booking service unavailable")


book_hotel.handle_tool_error = True  # the error goes back to the model as a ToolMessage


class TravelDocs(BaseRetriever):
    """A retriever over two fixed documents."""

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [
            Document(page_content="Paris museums are closed on Mondays.",
                     metadata={"source": "guide.md"}),
            Document(page_content="The Louvre needs a booked time slot.",
                     metadata={"source": "guide.md"}),
        ]


def script() -> list[AIMessage]:
    return [
        AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"},
                                           "id": "c1"}]),
        AIMessage(content="", tool_calls=[{"name": "book_hotel", "args": {"city": "Paris"},
                                           "id": "c2"}]),
        AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"},
                                           "id": "c3"}]),
        AIMessage(content="Sunny in Paris and Lyon; book the hotel by phone."),
    ]


def make_agent(model: ToolCallingFakeModel) -> Any:
    tools: dict[str, BaseTool] = {t.name: t for t in (get_weather, book_hotel)}
    bound = model.bind_tools(list(tools.values()))
    retriever = TravelDocs()

    @chain
    def travel_agent(question: str, config: RunnableConfig) -> str:
        retriever.invoke(question, config)
        messages: list[BaseMessage] = [HumanMessage(question)]
        for _ in range(8):
            reply = bound.invoke(messages, config)
            messages.append(reply)
            if not getattr(reply, "tool_calls", None):
                dispatch_custom_event(
                    "experience_sync.memory",
                    {"content": "Hotel booking fails online in Paris; phone works.",
                     "tags": ["booking"], "importance": 0.8},
                    config=config,
                )
                return str(reply.content)
            for call in reply.tool_calls:
                messages.append(tools[call["name"]].invoke(call, config))
        return "gave up"

    @chain
    async def async_travel_agent(question: str, config: RunnableConfig) -> str:
        await retriever.ainvoke(question, config)
        messages: list[BaseMessage] = [HumanMessage(question)]
        for _ in range(8):
            reply = await bound.ainvoke(messages, config)
            messages.append(reply)
            if not getattr(reply, "tool_calls", None):
                await adispatch_custom_event(
                    "experience_sync.memory",
                    {"content": "Hotel booking fails online in Paris; phone works.",
                     "tags": ["booking"], "importance": 0.8},
                    config=config,
                )
                return str(reply.content)
            for call in reply.tool_calls:
                messages.append(await tools[call["name"]].ainvoke(call, config))
        return "gave up"

    return travel_agent, async_travel_agent


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread() as server:
        yield server


@pytest.fixture
def connect(
    hub: HubServer, tmp_path: Path
) -> Iterator[Callable[[str], ExperienceSyncManager]]:
    managers: list[ExperienceSyncManager] = []

    def _connect(instance_id: str) -> ExperienceSyncManager:
        token = hub.create_token(AGENT, instance_id)
        config = validate_config(
            {"transport": {"https": {"auth_token": token}}, "streaming": {"interval_ms": 20}}
        )
        manager = ExperienceSyncManager(data_dir=tmp_path / "instances")
        manager.initialize_sync(instance_id, config=config, endpoint=hub.url, agent_id=AGENT)
        managers.append(manager)
        return manager

    yield _connect
    for manager in managers:
        manager.shutdown(timeout=5)


def merged(manager: ExperienceSyncManager, instance_id: str) -> AgentState:
    assert manager.flush(instance_id, timeout=15), manager.status(instance_id)
    return manager.pull(AGENT, instance_id=instance_id)


def skill(state: AgentState, name: str) -> Any:
    found = [s for s in state.skills if s.name == name]
    assert found, f"skill {name!r} not merged; skills: {[s.name for s in state.skills]}"
    return found[0]


# --------------------------------------------------------------------------- tests


def test_agent_run_is_merged_at_the_hub(connect: Callable[[str], ExperienceSyncManager]) -> None:
    manager = connect("travel-1")
    handler = ExperienceSyncCallbackHandler(manager, "travel-1")
    travel_agent, _ = make_agent(ToolCallingFakeModel(messages=iter(script())))

    answer = travel_agent.invoke("Weather in Paris and Lyon?", config={"callbacks": [handler]})

    assert answer.startswith("Sunny in Paris")
    assert handler.errors == 0
    state = merged(manager, "travel-1")
    weather = skill(state, "get_weather")
    assert weather.usage.total_invocations == 2
    assert weather.usage.success_rate == pytest.approx(1.0)
    assert weather.proficiency == pytest.approx(1.0)  # the instance's success rate
    assert weather.category == "tool"
    assert "travel_agent" in weather.usage.contexts
    booking = skill(state, "book_hotel")
    assert booking.usage.total_invocations == 1
    assert booking.usage.success_rate == pytest.approx(0.0)
    assert booking.proficiency == pytest.approx(0.0)
    assert booking.source_instances == ["travel-1"]
    memories = {m.content: m for m in state.memories}
    memory = memories["Hotel booking fails online in Paris; phone works."]
    assert {"langchain", "booking"} <= set(memory.tags)
    assert memory.importance == pytest.approx(0.8)
    # retrieved documents are not learned knowledge unless asked for
    assert state.knowledge == []
    assert state.stats.interactions == 1


def test_async_handler_and_two_instances_accumulate(
    connect: Callable[[str], ExperienceSyncManager],
) -> None:
    sync_manager = connect("travel-sync")
    async_manager = connect("travel-async")
    travel_agent, _ = make_agent(ToolCallingFakeModel(messages=iter(script())))
    _, async_travel_agent = make_agent(ToolCallingFakeModel(messages=iter(script())))

    travel_agent.invoke(
        "Weather?", config={"callbacks": [ExperienceSyncCallbackHandler(
            sync_manager, "travel-sync", record_retrievals=True)]}
    )
    handler = AsyncExperienceSyncCallbackHandler(async_manager, "travel-async",
                                                 record_retrievals=True)
    asyncio.run(async_travel_agent.ainvoke("Weather?", config={"callbacks": [handler]}))

    assert handler.errors == 0
    merged(sync_manager, "travel-sync")
    state = merged(async_manager, "travel-async")
    weather = skill(state, "get_weather")
    assert weather.usage.total_invocations == 4
    assert sorted(weather.source_instances) == ["travel-async", "travel-sync"]
    assert skill(state, "book_hotel").usage.total_invocations == 2
    # the same memory from two instances is one merged memory
    same = [m for m in state.memories if m.content.startswith("Hotel booking fails")]
    assert len(same) == 1
    assert sorted(same[0].source_instances) == ["travel-async", "travel-sync"]
    # with record_retrievals=True, documents become knowledge: one item per
    # document, and two instances retrieving the same one verify it both
    assert {k.content for k in state.knowledge} == {"Paris museums are closed on Mondays.",
                                                    "The Louvre needs a booked time slot."}
    item = next(k for k in state.knowledge if k.content.startswith("Paris museums"))
    assert set(item.verifications) == {"travel-async", "travel-sync"}


def test_raising_tool_is_a_failure_and_the_run_error_an_interaction(
    connect: Callable[[str], ExperienceSyncManager],
) -> None:
    manager = connect("travel-err")

    @tool
    def flaky_search(query: str) -> str:
        """A search backend that is down."""
        raise ConnectionError("search backend down")

    handler = ExperienceSyncCallbackHandler(manager, "travel-err")

    @chain
    def agent(question: str, config: RunnableConfig) -> str:
        return str(flaky_search.invoke({"query": question}, config))

    with pytest.raises(ConnectionError):
        agent.invoke("anything", config={"callbacks": [handler]})

    state = merged(manager, "travel-err")
    search = skill(state, "flaky_search")
    assert (search.usage.total_invocations, search.usage.success_rate) == (1, 0.0)
    assert state.stats.interactions == 1


def test_no_prompt_or_tool_input_leaves_the_instance_and_the_filter_hook_applies(
    connect: Callable[[str], ExperienceSyncManager], register_plugin: Callable[..., str]
) -> None:
    seen: list[ExperienceEvent] = []

    class Redactor:
        @hookimpl
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            seen.append(event)
            if event.event_type == "skill" and event.skill.name == "book_hotel":
                return None  # this deployment does not share booking skills
            return event

    register_plugin(Redactor(), name="redactor")
    manager = connect("travel-private")
    handler = ExperienceSyncCallbackHandler(manager, "travel-private", remember_outputs=True)
    travel_agent, _ = make_agent(ToolCallingFakeModel(messages=iter(script())))

    travel_agent.invoke(f"Weather in Paris? {SECRET}", config={"callbacks": [handler]})

    state = merged(manager, "travel-private")
    dumped = json.dumps([e.model_dump(mode="json") for e in seen])
    assert seen and SECRET not in dumped and "4111" not in dumped
    assert "Paris" not in json.dumps([e.model_dump(mode="json") for e in seen
                                      if e.event_type == "skill"])  # tool inputs not kept
    assert "book_hotel" not in {s.name for s in state.skills}
    assert skill(state, "get_weather").usage.total_invocations == 2
    # remember_outputs keeps the final answer (not the question) as a memory
    assert any(m.content.startswith("Sunny in Paris and Lyon") for m in state.memories)
    assert manager.status("travel-private").filtered == 1


def test_custom_events_record_knowledge_skill_and_characteristic(
    connect: Callable[[str], ExperienceSyncManager],
) -> None:
    manager = connect("travel-custom")
    handler = ExperienceSyncCallbackHandler(manager, "travel-custom")

    @chain
    def agent(question: str, config: RunnableConfig) -> str:
        dispatch_custom_event("experience_sync.knowledge",
                              {"content": "Lyon has two airports.", "subject": "lyon airports",
                               "confidence": 0.9}, config=config)
        dispatch_custom_event("experience_sync.skill",
                              {"name": "itinerary planning", "success": True,
                               "proficiency": 0.7, "category": "planning"}, config=config)
        dispatch_custom_event("experience_sync.characteristic",
                              {"key": "tone", "value": "concise"}, config=config)
        dispatch_custom_event("experience_sync.memory", "Travellers like early trains.",
                              config=config)
        dispatch_custom_event("something.else", {"ignored": True}, config=config)
        return "ok"

    agent.invoke("plan", config={"callbacks": [handler]})

    assert handler.errors == 0
    state = merged(manager, "travel-custom")
    assert any(k.subject == "lyon airports" for k in state.knowledge)
    planning = skill(state, "itinerary planning")
    assert planning.proficiency == pytest.approx(0.7)
    assert planning.category == "planning"
    assert state.characteristics["tone"].value == "concise"
    assert "Travellers like early trains." in {m.content for m in state.memories}


def test_one_handler_serves_concurrent_runs(
    connect: Callable[[str], ExperienceSyncManager],
) -> None:
    manager = connect("travel-batch")
    handler = ExperienceSyncCallbackHandler(manager, "travel-batch")
    cities = [f"City{i}" for i in range(24)]

    results = get_weather.batch([{"city": c} for c in cities],
                                config={"callbacks": [handler], "max_concurrency": 8})

    assert results == [f"sunny in {c}" for c in cities]
    assert (handler.recorded, handler.errors) == (24, 0)
    weather = skill(merged(manager, "travel-batch"), "get_weather")
    assert weather.usage.total_invocations == 24
    assert weather.usage.success_rate == pytest.approx(1.0)


def test_agent_finish_is_remembered_only_when_asked(
    connect: Callable[[str], ExperienceSyncManager],
) -> None:
    from uuid import uuid4

    from langchain_core.agents import AgentFinish

    manager = connect("travel-legacy")
    finish = AgentFinish(return_values={"output": "Museums close on Mondays."}, log="")
    quiet = ExperienceSyncCallbackHandler(manager, "travel-legacy")
    quiet.on_agent_finish(finish, run_id=uuid4())
    assert quiet.recorded == 0
    keen = ExperienceSyncCallbackHandler(manager, "travel-legacy", remember_outputs=True)
    keen.on_agent_finish(finish, run_id=uuid4())
    state = merged(manager, "travel-legacy")
    assert [m.content for m in state.memories] == ["Museums close on Mondays."]
    assert "agent" in state.memories[0].tags


def test_handler_never_breaks_the_run(tmp_path: Path) -> None:
    class Broken:
        def record_skill_use(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("outbox gone")

    handler = ExperienceSyncCallbackHandler(Broken(), "nowhere")
    assert get_weather.invoke({"city": "Oslo"}, config={"callbacks": [handler]}) == "sunny in Oslo"
    assert handler.errors == 1


# --------------------------------------------------------------------------- embeddings


class SynonymEmbeddings(Embeddings):
    """A small real ``Embeddings``: bag of words where synonyms share a dimension."""

    SYNONYMS = {"likes": "prefers", "enjoys": "prefers", "favours": "prefers"}
    VOCAB = ["user", "prefers", "green", "tea", "coffee", "black", "the", "in", "morning"]

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * (len(self.VOCAB) + 1)
        for word in re.findall(r"[a-z]+", text.lower()):
            word = self.SYNONYMS.get(word, word)
            vec[self.VOCAB.index(word) if word in self.VOCAB else -1] += 1.0
        return vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def test_langchain_embedder_normalises_and_probes_the_dimension() -> None:
    embedder = LangChainEmbedder(SynonymEmbeddings(), name="syn", batch_size=2)
    assert embedder.dim == 10
    vectors = embedder.embed(["The user likes green tea", "the user prefers green tea",
                              "black coffee", ""])
    assert vectors.shape == (4, 10) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0)
    assert float(vectors[0] @ vectors[2]) < 0.2


def test_registered_embeddings_dedup_paraphrases_at_the_hub(tmp_path: Path) -> None:
    register_langchain_embeddings("synonyms", SynonymEmbeddings())
    config = validate_config({"merge_strategy": {"similarity_method": "embedding",
                                                 "embedder": "synonyms",
                                                 "similarity_threshold": 0.95}})
    with run_in_thread(strategy=config.merge_strategy) as server:
        managers = []
        for iid, text in (("a", "The user prefers green tea"), ("b", "the user likes green tea")):
            token = server.create_token(AGENT, iid)
            cfg = validate_config({"transport": {"https": {"auth_token": token}}})
            manager = ExperienceSyncManager(data_dir=tmp_path / iid)
            manager.initialize_sync(iid, config=cfg, endpoint=server.url, agent_id=AGENT)
            manager.record_memory(iid, text, importance=0.6)
            assert manager.flush(iid, timeout=15)
            managers.append(manager)
        state = managers[1].pull(AGENT, instance_id="b")
        for manager in managers:
            manager.shutdown(timeout=5)
    assert len(state.memories) == 1
    assert sorted(state.memories[0].source_instances) == ["a", "b"]


def test_embedder_names_clash_loudly() -> None:
    register_langchain_embeddings("mine", SynonymEmbeddings())
    with pytest.raises(PluginError, match="already registered"):
        register_langchain_embeddings("mine", SynonymEmbeddings())
    with pytest.raises(PluginError, match="hashing"):
        register_langchain_embeddings("hashing", SynonymEmbeddings())
    assert "hashing" in get_plugin_manager().registry.names("embedders")
    unregister_langchain_embeddings("mine")
    assert "mine" not in get_plugin_manager().registry.names("embedders")


def test_entry_point_registers_embeddings_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enable_plugin_autoload: Callable[..., None]
) -> None:
    module = tmp_path / "xs_lc_embeddings_for_test.py"
    module.write_text(textwrap.dedent("""
        from langchain_core.embeddings import DeterministicFakeEmbedding

        def make():
            return DeterministicFakeEmbedding(size=24)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS",
                       "fake24=xs_lc_embeddings_for_test:make")
    enable_plugin_autoload("langchain")
    try:
        pm = get_plugin_manager()
        assert "fake24" in pm.registry.names("embedders")
        config = validate_config({"merge_strategy": {"embedder": "fake24"}})
        embedder = pm.registry.create("embedders", "fake24", config.merge_strategy)
        assert embedder.dim == 24
        assert embedder.embed(["hello"]).shape == (1, 24)
    finally:
        sys.modules.pop("xs_lc_embeddings_for_test", None)


def test_langchain_example_runs_offline(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "langchain_example.py"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EXPERIENCE_SYNC_")}
    env["EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env,
                                        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "web_search     invocations=1   success_rate=1.00 proficiency=1.00" in proc.stdout
    assert "Online train booking fails" in proc.stdout
