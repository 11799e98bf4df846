"""The CrewAI adapter against a real crew kickoff and a real hub on loopback.

The crew is real (``Crew``, ``Agent``, ``Task``, ``@tool`` tools, agent
knowledge, ``crewai.Memory``); only the LLM is an offline ``BaseLLM`` that
answers with canned ReAct text. CrewAI writes under ``$HOME`` and phones home
unless told not to, so the module runs with a temporary ``HOME`` and telemetry
and tracing off, and imports CrewAI (slow) only then.
"""

from __future__ import annotations

import inspect
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from crewai_sandbox import crewai_home

from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.config import validate_config
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import AgentState

AGENT = "research-agent"


@pytest.fixture(scope="module")
def crewai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """CrewAI imported with a temporary HOME and no telemetry; test doubles built on it."""
    with crewai_home(tmp_path_factory) as home:
        from crewai import Agent, Crew, Memory, Task
        from crewai.events import crewai_event_bus
        from crewai.knowledge.knowledge import Knowledge
        from crewai.knowledge.storage.base_knowledge_storage import BaseKnowledgeStorage
        from crewai.llms.base_llm import BaseLLM
        from crewai.rag.embeddings.providers.custom.embedding_callable import (
            CustomEmbeddingFunction,
        )
        from crewai.tools import tool

        class ScriptedLLM(BaseLLM):
            """Answers knowledge-query rewrites with a query, CrewAI memory's
            extraction and analysis prompts with ``memories`` and fixed fields,
            else the next ReAct step."""

            def __init__(self, steps: list[str], memories: list[str] | None = None,
                         **kwargs: Any) -> None:
                super().__init__(model="scripted-offline", **kwargs)
                self._steps = list(steps)
                self._memories = memories

            def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
                     available_functions: Any = None, from_task: Any = None,
                     from_agent: Any = None, response_model: Any = None, **kw: Any) -> str:
                text = messages if isinstance(messages, str) else str(messages[-1]["content"])
                system = "" if isinstance(messages, str) else str(messages[0]["content"])
                if "The original query is" in text:
                    return "population of paris"
                if system.startswith("You extract discrete, reusable memory"):
                    if self._memories is None:
                        raise RuntimeError("no memories scripted")
                    return json.dumps({"memories": self._memories})
                if system.startswith("You analyze content to be stored"):
                    return json.dumps({"suggested_scope": "/ops", "categories": ["tools"],
                                       "importance": 0.7, "extracted_metadata": {}})
                if (system.startswith(("You analyze a query", "You are comparing"))
                        or "Relevant memory excerpts:" in text):
                    raise RuntimeError("not scripted")  # CrewAI falls back to its defaults
                if not self._steps:
                    raise RuntimeError("the script ran out")
                return self._steps.pop(0)

            def supports_function_calling(self) -> bool:
                return False

        class ListStorage(BaseKnowledgeStorage):
            """Knowledge storage over a list: every search returns every document."""

            docs: list[str] = []

            def search(self, query: list[str], limit: int = 5,
                       metadata_filter: dict[str, Any] | None = None,
                       score_threshold: float = 0.6) -> list[Any]:
                return [{"id": str(i), "content": d, "metadata": {}, "score": 1.0}
                        for i, d in enumerate(self.docs)][:limit]

            async def asearch(self, query: list[str], limit: int = 5,
                              metadata_filter: dict[str, Any] | None = None,
                              score_threshold: float = 0.6) -> list[Any]:
                return self.search(query, limit)

            def save(self, documents: list[str]) -> None:
                self.docs.extend(documents)

            async def asave(self, documents: list[str]) -> None:
                self.save(documents)

            def reset(self) -> None:
                self.docs.clear()

            async def areset(self) -> None:
                self.reset()

        @tool("population_lookup")
        def population_lookup(city: str) -> str:
            """Look up the population of a city."""
            return f"{city} has about 2.1 million inhabitants"

        @tool("census_api")
        def census_api(city: str) -> str:
            """Query the census API (which is down)."""
            raise ConnectionError("census API unavailable")

        flaky_calls: list[str] = []

        @tool("flaky_lookup")
        def flaky_lookup(city: str) -> str:
            """Look up a city; the first attempt times out."""
            flaky_calls.append(city)
            # CrewAI's attempt calls a raising tool twice (again with the
            # unfiltered arguments) before it counts the attempt as failed
            if len(flaky_calls) <= 2:
                raise TimeoutError("try again")
            return f"{city} has about 2.1 million inhabitants"

        try:  # crewai up to 1.15.30 depends on chromadb, whose base its custom provider wants too
            from chromadb.api.types import EmbeddingFunction as ChromaEmbeddingFunction

            bases: tuple[type, ...] = (CustomEmbeddingFunction, ChromaEmbeddingFunction)
        except ImportError:
            bases = (CustomEmbeddingFunction,)

        class HashEmbedding(*bases):  # type: ignore[misc]
            """A word-hashing embedder for CrewAI's custom embedding provider."""

            def __init__(self) -> None:  # chromadb warns about classes without one
                pass

            def __call__(self, input: list[str]) -> list[list[float]]:
                return embed(input)

        def embed(texts: list[str]) -> list[list[float]]:
            out = []
            for text in texts:
                vec = [0.0] * 32
                for word in text.lower().split():
                    vec[zlib.crc32(word.encode()) % 32] += 1.0
                out.append(vec)
            return out

        from experience_sync_crewai import ExperienceSyncListener, seed_crew_memory

        yield SimpleNamespace(
            Agent=Agent, Crew=Crew, Task=Task, Memory=Memory, Knowledge=Knowledge,
            bus=crewai_event_bus, ScriptedLLM=ScriptedLLM, ListStorage=ListStorage,
            population_lookup=population_lookup, census_api=census_api, embed=embed,
            flaky_lookup=flaky_lookup, flaky_calls=flaky_calls, HashEmbedding=HashEmbedding,
            Listener=ExperienceSyncListener, seed=seed_crew_memory, home=home,
        )


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread() as server:
        yield server


@pytest.fixture
def connect(
    hub: HubServer, tmp_path: Path
) -> Iterator[Callable[..., ExperienceSyncManager]]:
    managers: list[ExperienceSyncManager] = []

    def _connect(instance_id: str | None = None) -> ExperienceSyncManager:
        manager = ExperienceSyncManager(data_dir=tmp_path / "instances")
        if instance_id is not None:
            manager.initialize_sync(instance_id, config=config_for(hub, instance_id),
                                    endpoint=hub.url, agent_id=AGENT)
        managers.append(manager)
        return manager

    yield _connect
    for manager in managers:
        manager.shutdown(timeout=5)


def config_for(hub: HubServer, instance_id: str) -> Any:
    token = hub.create_token(AGENT, instance_id)
    return validate_config(
        {"transport": {"https": {"auth_token": token}}, "streaming": {"interval_ms": 20}}
    )


def research_crew(crewai: SimpleNamespace, name: str = "Research Crew") -> Any:
    llm = crewai.ScriptedLLM([
        'Thought: try the census first\nAction: census_api\nAction Input: {"city": "Paris"}',
        'Thought: use the lookup\nAction: population_lookup\nAction Input: {"city": "Paris"}',
        "Thought: I now know the final answer\nFinal Answer: Paris has about 2.1 million "
        "inhabitants.",
    ])
    agent = crewai.Agent(role="Demographics Researcher", goal="find populations",
                         backstory="a careful researcher", llm=llm,
                         tools=[crewai.census_api, crewai.population_lookup])
    agent.knowledge = crewai.Knowledge(
        collection_name="cities", sources=[],
        storage=crewai.ListStorage(docs=["Paris is the capital of France."]),
    )
    task = crewai.Task(name="paris population", description="How many people live in Paris?",
                       expected_output="a number", agent=agent)
    return crewai.Crew(name=name, agents=[agent], tasks=[task])


def merged(manager: ExperienceSyncManager, instance_id: str) -> AgentState:
    assert manager.flush(instance_id, timeout=15), manager.status(instance_id)
    return manager.pull(AGENT, instance_id=instance_id)


def skill(state: AgentState, name: str) -> Any:
    found = [s for s in state.skills if s.name == name]
    assert found, f"skill {name!r} not merged; skills: {[s.name for s in state.skills]}"
    return found[0]


def test_crew_kickoff_is_merged_at_the_hub(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-1")
    crew = research_crew(crewai)
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="crew-1") as listener:
        result = crew.kickoff()
        assert crewai.bus.flush(timeout=10)

    assert "2.1 million" in str(result)
    assert listener.errors == 0
    state = merged(manager, "crew-1")
    lookup = skill(state, "population_lookup")
    assert (lookup.usage.total_invocations, lookup.usage.success_rate) == (1, 1.0)
    assert lookup.proficiency == pytest.approx(1.0)  # the instance's success rate
    assert lookup.category == "tool"
    assert "Demographics Researcher" in lookup.usage.contexts
    census = skill(state, "census_api")
    # CrewAI runs a raising tool up to three times (three ToolUsageErrorEvents):
    # one call the agent made, one failed use
    assert census.usage.total_invocations == 1
    assert census.usage.success_rate == 0.0
    assert census.proficiency == 0.0
    task_memory = [m for m in state.memories if "paris population" in m.content]
    assert len(task_memory) == 1
    assert task_memory[0].content == (
        'Demographics Researcher completed task "paris population": '
        "Paris has about 2.1 million inhabitants."
    )
    assert {"crewai", "task", "demographics-researcher"} <= set(task_memory[0].tags)
    # the knowledge CrewAI retrieved into the prompt was read, not learned
    assert state.knowledge == []
    assert state.stats.interactions == 1  # the agent execution, with its tool use
    assert manager.status("crew-1").recorded == 4


def test_a_task_without_a_name_is_a_task_in_its_memory_never_its_id(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    # The memory's text is what recall shows other instances' models: a task
    # id there is internal metadata in a prompt (issue 11's fleet scenario).
    manager = connect("crew-unnamed")
    llm = crewai.ScriptedLLM(["Thought: I now know the final answer\nFinal Answer: 2.1 million."])
    agent = crewai.Agent(role="Researcher", goal="answer", backstory="careful", llm=llm)
    task = crewai.Task(description="How many people live in Paris?", expected_output="a number",
                       agent=agent)
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="crew-unnamed"):
        crewai.Crew(agents=[agent], tasks=[task]).kickoff()
        assert crewai.bus.flush(timeout=10)
    (memory,) = merged(manager, "crew-unnamed").memories
    assert memory.content == "Researcher completed a task: 2.1 million."
    assert str(task.id)[:8] not in memory.content


def test_crew_runs_while_the_hub_is_down_and_syncs_when_it_returns(
    crewai: SimpleNamespace, hub: HubServer, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-offline")
    hub.stop()
    try:
        with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="crew-offline"):
            result = research_crew(crewai).kickoff()
            assert crewai.bus.flush(timeout=10)
        assert "2.1 million" in str(result)
        status = manager.status("crew-offline")
        assert status.recorded == 4 and status.delivered == 0 and status.backlog_size == 4
    finally:
        hub.start()
    state = merged(manager, "crew-offline")
    assert skill(state, "population_lookup").usage.total_invocations == 1
    assert skill(state, "census_api").usage.total_invocations == 1


def test_instance_id_comes_from_the_crew(
    crewai: SimpleNamespace, hub: HubServer, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect()
    derived = "crewai-census-crew"
    with crewai.bus.scoped_handlers(), crewai.Listener(
        manager, agent_id=AGENT,
        sync_options={"endpoint": hub.url, "config": config_for(hub, derived)},
    ):
        research_crew(crewai, name="Census Crew").kickoff()
        assert crewai.bus.flush(timeout=10)
    state = merged(manager, derived)
    assert skill(state, "population_lookup").source_instances == [derived]
    assert manager.status(derived).delivered >= 4


def test_one_instance_per_agent_role(
    crewai: SimpleNamespace, hub: HubServer, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect()
    crew = research_crew(crewai, name="Two Desk Crew")
    writer_llm = crewai.ScriptedLLM(["Thought: I now know the final answer\nFinal Answer: "
                                     "Paris: 2.1 million people."])
    writer = crewai.Agent(role="Writer", goal="write", backstory="concise", llm=writer_llm)
    crew.agents.append(writer)
    crew.tasks.append(crewai.Task(name="summary", description="Summarise.",
                                  expected_output="one line", agent=writer))
    options = lambda iid: {"endpoint": hub.url, "config": config_for(hub, iid)}  # noqa: E731

    with crewai.bus.scoped_handlers(), crewai.Listener(
        manager, agent_id=AGENT, per_agent=True, sync_options=options
    ) as listener:
        crew.kickoff()
        assert crewai.bus.flush(timeout=10)

    assert listener.errors == 0
    researcher, writer_id = ("crewai-two-desk-crew-demographics-researcher",
                             "crewai-two-desk-crew-writer")
    merged(manager, writer_id)
    state = merged(manager, researcher)
    assert skill(state, "population_lookup").source_instances == [researcher]
    by_instance = {m.source_instances[0]: m.content for m in state.memories}
    assert by_instance[writer_id].startswith('Writer completed task "summary"')
    assert by_instance[researcher].startswith("Demographics Researcher completed")


def test_a_call_crewai_retries_until_it_works_is_one_successful_use(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-flaky")
    crewai.flaky_calls.clear()
    llm = crewai.ScriptedLLM([
        'Thought: look it up\nAction: flaky_lookup\nAction Input: {"city": "Paris"}',
        "Thought: I now know the final answer\nFinal Answer: about 2.1 million.",
    ])
    agent = crewai.Agent(role="Demographics Researcher", goal="find populations",
                         backstory="a careful researcher", llm=llm, tools=[crewai.flaky_lookup])
    task = crewai.Task(name="paris", description="How many people live in Paris?",
                       expected_output="a number", agent=agent)
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="crew-flaky"):
        crewai.Crew(agents=[agent], tasks=[task]).kickoff()
        assert crewai.bus.flush(timeout=10)

    assert crewai.flaky_calls == ["Paris"] * 3  # one failed attempt, one retry that worked
    flaky = skill(merged(manager, "crew-flaky"), "flaky_lookup")
    assert (flaky.usage.total_invocations, flaky.usage.success_rate) == (1, 1.0)


def test_a_memory_crew_records_each_memory_it_saved_not_the_batch_summary(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-remembers")
    lessons = ["Paris has about 2.1 million inhabitants.",
               "The census API is down; population_lookup answers instead."]

    def memory_crew(memories: list[str]) -> Any:
        llm = crewai.ScriptedLLM(
            ["Thought: I now know the final answer\nFinal Answer: about 2.1 million."],
            memories=memories,
        )
        agent = crewai.Agent(role="Demographics Researcher", goal="find populations",
                             backstory="a careful researcher", llm=llm)
        task = crewai.Task(name="paris", description="How many people live in Paris?",
                           expected_output="a number", agent=agent)
        return crewai.Crew(  # CrewAI 1.15: memory=True saves through Memory.remember_many()
            name="Memory Crew", agents=[agent], tasks=[task], memory=True,
            embedder={"provider": "custom",
                      "config": {"embedding_callable": crewai.HashEmbedding}},
        )

    saves: list[str] = []
    with crewai.bus.scoped_handlers(), crewai.Listener(
        manager, instance_id="crew-remembers", record_tasks=False, record_agents=False
    ) as listener:
        from crewai.events import MemorySaveCompletedEvent

        crewai.bus.on(MemorySaveCompletedEvent)(lambda source, event: saves.append(event.value))
        memory_crew(lessons).kickoff()
        assert crewai.bus.flush(timeout=10)

    assert saves == ["2 memories saved"]  # what CrewAI's event says
    assert listener.errors == 0
    state = merged(manager, "crew-remembers")
    assert sorted(m.content for m in state.memories) == sorted(lessons)
    for memory in state.memories:
        assert {"crewai", "memory", "tools"} <= set(memory.tags)  # "tools": CrewAI's category
        assert memory.importance == pytest.approx(0.7)
    assert manager.status("crew-remembers").recorded == 2

    # the next run of the crew (same memory store, a new listener) records its
    # new memory only, not what the store held already
    with crewai.bus.scoped_handlers(), crewai.Listener(
        manager, instance_id="crew-remembers", record_tasks=False, record_agents=False
    ):
        memory_crew(["Lyon has about half a million inhabitants."]).kickoff()
        assert crewai.bus.flush(timeout=10)
    assert manager.status("crew-remembers").recorded == 3
    state = merged(manager, "crew-remembers")
    assert "Lyon has about half a million inhabitants." in [m.content for m in state.memories]


def test_retrieved_knowledge_is_recorded_only_when_asked(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-reads")
    with crewai.bus.scoped_handlers(), crewai.Listener(
        manager, instance_id="crew-reads", record_knowledge=True
    ) as listener:
        research_crew(crewai, name="Reading Crew").kickoff()
        assert crewai.bus.flush(timeout=10)
    assert listener.errors == 0
    state = merged(manager, "crew-reads")
    assert [k.content for k in state.knowledge] == ["Paris is the capital of France."]


def test_memory_saves_are_recorded_and_seeded_memories_are_not_sent_back(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager], tmp_path: Path
) -> None:
    manager = connect("crew-mem")
    no_llm = crewai.ScriptedLLM([])
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="crew-mem"):
        memory = crewai.Memory(llm=no_llm, storage=str(tmp_path / "mem-a"), embedder=crewai.embed)
        memory.remember("Census API is down on weekends; use the population lookup.",
                        scope="/ops", categories=["tools"], importance=0.8)
        memory.close()
        assert crewai.bus.flush(timeout=10)
        state = merged(manager, "crew-mem")
        assert [m.content for m in state.memories] == [
            "Census API is down on weekends; use the population lookup."
        ]
        recorded = manager.status("crew-mem").recorded

        # a fresh crew memory starts from what the source agent knows
        fresh = crewai.Memory(llm=no_llm, storage=str(tmp_path / "mem-b"), embedder=crewai.embed)
        assert crewai.seed(manager, fresh, AGENT, instance_id="crew-mem") == 1
        records = fresh.list_records()
        fresh.close()
        assert crewai.bus.flush(timeout=10)
    assert [r.content for r in records] == [
        "Census API is down on weekends; use the population lookup."
    ]
    assert records[0].importance == pytest.approx(state.memories[0].importance)
    assert manager.status("crew-mem").recorded == recorded  # nothing echoed back


def test_handlers_take_exactly_source_and_event_and_close_removes_them(
    crewai: SimpleNamespace, connect: Callable[..., ExperienceSyncManager]
) -> None:
    manager = connect("crew-sig")
    from crewai.events import TaskCompletedEvent

    with crewai.bus.scoped_handlers():
        listener = crewai.Listener(manager, instance_id="crew-sig")
        assert len(listener._handlers) == 11
        for _, handler in listener._handlers:
            assert list(inspect.signature(handler).parameters) == ["source", "event"]
        assert crewai.bus._sync_handlers.get(TaskCompletedEvent)
        listener.close()
        assert not crewai.bus._sync_handlers.get(TaskCompletedEvent)


def test_crewai_events_command(enable_plugin_autoload: Callable[..., None]) -> None:
    enable_plugin_autoload("crewai")
    from experience_sync.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["crewai-events"])
    assert result.exit_code == 0, result.output
    assert "ToolUsageErrorEvent" in result.output and "skill" in result.output
    assert "Not recorded" in result.output
