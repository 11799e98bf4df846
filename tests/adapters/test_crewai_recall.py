"""The CrewAI read path: what one instance learned is in another crew's prompt.

A real hub on loopback; instance A learns (plain ``record_memory`` /
``record_knowledge`` and a real CrewAI crew whose tool use the listener
records); instance B is a real CrewAI crew whose one-line read path is
``knowledge=FleetKnowledge(manager, "inst-b")`` and whose offline LLM keeps
every prompt it receives. The lesson must reach B's prompts, keep reaching them
with the hub down, and nothing internal (ids, hashes, instance names, scores)
may reach the model.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from crewai_sandbox import crewai_home

from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.config import validate_config
from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "city-researcher"
LESSON = "The census API is down on weekends; ask population_lookup for city populations."
FACT = "Paris had 2,102,650 inhabitants at the 2021 census."
TASK = "How many people live in Paris? Check the census API first."


@pytest.fixture(scope="module")
def crewai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """CrewAI imported with a temporary HOME and no telemetry; an offline LLM that keeps prompts."""
    with crewai_home(tmp_path_factory):
        from crewai import Agent, Crew, Memory, Task
        from crewai.events import crewai_event_bus
        from crewai.llms.base_llm import BaseLLM
        from crewai.tools import tool

        class PromptKeepingLLM(BaseLLM):
            """Keeps every prompt; rewrites a knowledge query to the task itself,
            else answers with the next ReAct step."""

            def __init__(self, steps: list[str], **kwargs: Any) -> None:
                super().__init__(model="prompt-keeping-offline", **kwargs)
                self._steps = list(steps)
                self.prompts: list[str] = []

            def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
                     available_functions: Any = None, from_task: Any = None,
                     from_agent: Any = None, response_model: Any = None, **kw: Any) -> str:
                if isinstance(messages, str):
                    messages = [{"role": "user", "content": messages}]
                prompt = "\n".join(str(m["content"]) for m in messages)
                self.prompts.append(prompt)
                last = str(messages[-1]["content"])
                if last.startswith("The original query is:"):
                    return last.removeprefix("The original query is:").strip().rstrip(".")
                if not self._steps:
                    raise RuntimeError("the script ran out")
                return self._steps.pop(0)

            def supports_function_calling(self) -> bool:
                return False

            def task_prompts(self) -> list[str]:
                """The ReAct prompts (not the knowledge-query rewrites)."""
                return [p for p in self.prompts if "Current Task:" in p]

        @tool("population_lookup")
        def population_lookup(city: str) -> str:
            """Look up the population of a city."""
            return f"{city} has about 2.1 million inhabitants"

        @tool("census_api")
        def census_api(city: str) -> str:
            """Query the census API (which is down)."""
            raise ConnectionError("census API unavailable")

        def embed(texts: list[str]) -> list[list[float]]:
            out = []
            for text in texts:
                vec = [0.0] * 32
                for word in text.lower().split():
                    vec[zlib.crc32(word.encode()) % 32] += 1.0
                out.append(vec)
            return out

        from experience_sync_crewai import (
            ExperienceSyncListener,
            FleetKnowledge,
            seed_crew_memory,
            tool_reliability,
        )

        yield SimpleNamespace(
            Agent=Agent, Crew=Crew, Task=Task, Memory=Memory, bus=crewai_event_bus,
            LLM=PromptKeepingLLM, population_lookup=population_lookup, census_api=census_api,
            embed=embed, Listener=ExperienceSyncListener, FleetKnowledge=FleetKnowledge,
            seed=seed_crew_memory, tool_reliability=tool_reliability,
        )


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread(auth=False) as server:
        yield server


@pytest.fixture
def instance(hub: HubServer, tmp_path: Path) -> Iterator[Callable[[str], ExperienceSyncManager]]:
    """A manager per instance, each with its own data directory (its own machine)."""
    managers: list[ExperienceSyncManager] = []

    def _instance(instance_id: str) -> ExperienceSyncManager:
        manager = ExperienceSyncManager(data_dir=tmp_path / instance_id)
        config = validate_config({"streaming": {"interval_ms": 20},
                                  "recall": {"pull_interval": 0.5}})
        manager.initialize_sync(instance_id, config=config, endpoint=hub.url, agent_id=AGENT)
        managers.append(manager)
        return manager

    yield _instance
    for manager in managers:
        manager.shutdown(timeout=5)


def crew(crewai: SimpleNamespace, llm: Any, **crew_kwargs: Any) -> Any:
    agent = crewai.Agent(role="City Researcher", goal="find populations",
                         backstory="a careful researcher", llm=llm,
                         tools=[crewai.census_api, crewai.population_lookup])
    task = crewai.Task(name="paris", description=TASK, expected_output="a number", agent=agent)
    return crewai.Crew(agents=[agent], tasks=[task], **crew_kwargs)


def learn_on_a(
    crewai: SimpleNamespace, manager: ExperienceSyncManager,
    witness: ExperienceSyncManager | None = None,
) -> None:
    """Instance A learns: a memory and a fact recorded directly, tool use by a crew.

    Knowledge is integrated (and recalled) once a second instance, the
    ``witness`` "inst-c", confirms it.
    """
    manager.record_memory("inst-a", LESSON, importance=0.9)
    manager.record_knowledge("inst-a", FACT, confidence=0.9)
    if witness is not None:
        witness.record_knowledge("inst-c", FACT, confidence=0.9)
        assert witness.flush("inst-c", timeout=15)
    llm = crewai.LLM([
        'Thought: census first\nAction: census_api\nAction Input: {"city": "Paris"}',
        'Thought: the lookup then\nAction: population_lookup\nAction Input: {"city": "Paris"}',
        "Thought: I now know the final answer\nFinal Answer: about 2.1 million.",
    ])
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="inst-a",
                                                       record_tasks=False):
        crew(crewai, llm).kickoff()
        assert crewai.bus.flush(timeout=10)
    assert manager.flush("inst-a", timeout=15), manager.status("inst-a")


def wait_for(manager: ExperienceSyncManager, instance_id: str, text: str) -> None:
    """Poll B's replica until ``text`` is there (it pulls every 0.5 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(h.text == text for h in manager.search(instance_id, text, k=10)):
            return
        time.sleep(0.1)
    pytest.fail(f"{text!r} never reached {instance_id}'s replica")


def b_answers(crewai: SimpleNamespace, manager: ExperienceSyncManager, **listener: Any) -> Any:
    """One kickoff of B's crew with the one-line read path; its LLM (with the prompts)."""
    llm = crewai.LLM(["Thought: I now know the final answer\nFinal Answer: about 2.1 million."])
    fleet = crewai.FleetKnowledge(manager, "inst-b",
                                  tools=[crewai.census_api, crewai.population_lookup])
    with crewai.bus.scoped_handlers(), crewai.Listener(manager, instance_id="inst-b",
                                                       **listener):
        crew(crewai, llm, knowledge=fleet).kickoff()
        assert crewai.bus.flush(timeout=10)
    return llm


def internals(manager: ExperienceSyncManager, instance_id: str) -> list[str]:
    """Everything a prompt must never show: ids, hashes, instance names."""
    state = manager.pull(AGENT, instance_id=instance_id)
    found = ["inst-a", "inst-b", "inst-c", AGENT]
    found += [m.memory_id for m in state.memories] + [m.normalized_hash for m in state.memories]
    found += [k.knowledge_id for k in state.knowledge] + [s.skill_id for s in state.skills]
    return [f for f in found if f]


def assert_nothing_internal(prompts: list[str], secrets: list[str]) -> None:
    for prompt in prompts:
        for secret in secrets:
            assert secret not in prompt
        assert "score" not in prompt.lower()


def test_what_a_learned_is_in_b_crews_prompt_and_stays_with_the_hub_down(
    crewai: SimpleNamespace, hub: HubServer, instance: Callable[[str], ExperienceSyncManager]
) -> None:
    a, b = instance("inst-a"), instance("inst-b")
    learn_on_a(crewai, a, instance("inst-c"))
    wait_for(b, "inst-b", LESSON)
    wait_for(b, "inst-b", FACT)
    b.refresh("inst-b")  # and the skills A's crew used

    llm = b_answers(crewai, b)
    [prompt] = llm.task_prompts()
    assert "Additional Information: Relevant things learned across the fleet:" in prompt
    assert f"- {LESSON}" in prompt
    assert f"- {FACT}" in prompt
    assert "- census_api: succeeded in 0% of 1 use across the fleet" in prompt
    assert "- population_lookup: succeeded in 100% of 1 use across the fleet" in prompt
    secrets = internals(b, "inst-b")
    assert len(secrets) >= 7
    assert_nothing_internal(llm.prompts, secrets)

    hub.stop()
    # offline: B answers from its replica, including what it just recorded itself
    b.record_memory("inst-b", "Paris population questions: population_lookup is reliable.")
    llm = b_answers(crewai, b)
    [prompt] = llm.task_prompts()
    assert f"- {LESSON}" in prompt
    assert "- Paris population questions: population_lookup is reliable." in prompt
    assert_nothing_internal(llm.prompts, secrets)


def test_recalled_text_is_not_sent_back_as_knowledge(
    crewai: SimpleNamespace, instance: Callable[[str], ExperienceSyncManager]
) -> None:
    a, b = instance("inst-a"), instance("inst-b")
    learn_on_a(crewai, a, instance("inst-c"))
    wait_for(b, "inst-b", FACT)
    llm = b_answers(crewai, b, record_knowledge=True, record_tasks=False,
                    record_agents=False, record_tools=False)
    assert FACT in llm.task_prompts()[0]
    assert b.status("inst-b").recorded == 0  # the recalled block was not retrieved knowledge


def test_an_instance_that_learned_nothing_yet_runs_without_recall(
    crewai: SimpleNamespace, instance: Callable[[str], ExperienceSyncManager]
) -> None:
    b = instance("inst-b")
    llm = b_answers(crewai, b)
    [prompt] = llm.task_prompts()
    assert "Additional Information" not in prompt and "fleet" not in prompt


def test_tool_reliability_lines(
    crewai: SimpleNamespace, instance: Callable[[str], ExperienceSyncManager]
) -> None:
    a, b = instance("inst-a"), instance("inst-b")
    assert crewai.tool_reliability(b, "inst-b", [crewai.census_api]) == ""
    learn_on_a(crewai, a)
    wait_for(b, "inst-b", LESSON)
    deadline = time.monotonic() + 30
    lines = ""
    while time.monotonic() < deadline and lines.count("\n") < 2:
        b.refresh("inst-b")
        lines = crewai.tool_reliability(
            b, "inst-b", [crewai.census_api, "population_lookup", "never_used"]
        )
    assert lines == (
        "How these tools have worked across the fleet:\n"
        "- census_api: succeeded in 0% of 1 use across the fleet\n"
        "- population_lookup: succeeded in 100% of 1 use across the fleet"
    )
    assert crewai.tool_reliability(b, "inst-b", ["census_api"], header=None) == (
        "- census_api: succeeded in 0% of 1 use across the fleet"
    )


def test_seeded_crew_memory_shows_the_model_only_the_text(
    crewai: SimpleNamespace, instance: Callable[[str], ExperienceSyncManager], tmp_path: Path
) -> None:
    a, b = instance("inst-a"), instance("inst-b")
    a.record_memory("inst-a", LESSON, importance=0.9, tags=["ops", "inst-a-tag"])
    assert a.flush("inst-a", timeout=15)
    memory = crewai.Memory(llm=crewai.LLM([]), storage=str(tmp_path / "seeded"),
                           embedder=crewai.embed)
    with crewai.bus.scoped_handlers(), crewai.Listener(b, instance_id="inst-b"):
        assert crewai.seed(b, memory, AGENT, instance_id="inst-b") == 1
        # what CrewAI puts in a task prompt: "Relevant memories:" + each match's format()
        shown = "\n".join(m.format() for m in memory.recall("census API", depth="shallow"))
        memory.close()
        assert crewai.bus.flush(timeout=10)
    assert LESSON in shown
    for secret in [*internals(b, "inst-b"), "inst-a-tag", "ops", "experience-sync"]:
        assert secret not in shown
    assert b.status("inst-b").recorded == 0  # the seeded memory is not sent back
