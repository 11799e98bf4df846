"""A CrewAI crew whose experiences sync to a source agent. Runs offline.

    pip install ./core ./adapters/crewai
    python examples/crewai_example.py                    # starts a local hub
    # or sync to a running hub, with a token bound to this example's agent and instance:
    experience-sync token create --agent travel-assistant --instance crewai-trip-1
    EXPERIENCE_SYNC_HUB_TOKEN=xs_... python examples/crewai_example.py --hub http://127.0.0.1:8787

The crew is real (agent, task, tools, agent knowledge); its LLM is a scripted
``BaseLLM`` answering in CrewAI's ReAct format, so no API key is needed.
Telemetry and tracing are switched off unless you set them. The two lines that
matter are marked "experience-sync": ``FleetKnowledge`` puts what the fleet
learned into each task's prompt (read), the listener records what the crew
does (write).
"""

from __future__ import annotations

import logging
import os
from typing import Any

# Before CrewAI is imported: no telemetry or tracing connections from an offline example.
for _name, _value in (("CREWAI_DISABLE_TELEMETRY", "true"), ("OTEL_SDK_DISABLED", "true"),
                      ("CREWAI_TRACING_ENABLED", "false")):
    os.environ.setdefault(_name, _value)
# The scripted LLM has no tokenizer; CrewAI would warn about it on every call.
logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)

from _common import run_example  # noqa: E402
from crewai import Agent, Crew, Task  # noqa: E402
from crewai.knowledge.knowledge import Knowledge  # noqa: E402
from crewai.knowledge.storage.base_knowledge_storage import BaseKnowledgeStorage  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402
from crewai.tools import tool  # noqa: E402
from experience_sync_crewai import ExperienceSyncListener, FleetKnowledge  # noqa: E402

from experience_sync.api import ExperienceSyncManager  # noqa: E402


class ScriptedLLM(BaseLLM):
    """An offline LLM: answers CrewAI's knowledge-query rewrite, then the ReAct steps."""

    def __init__(self, steps: list[str]) -> None:
        super().__init__(model="scripted-offline")
        self._steps = list(steps)

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
             available_functions: Any = None, from_task: Any = None, from_agent: Any = None,
             response_model: Any = None, **kwargs: Any) -> str:
        text = messages if isinstance(messages, str) else str(messages[-1]["content"])
        if "The original query is" in text:
            return "Paris to Lyon trains"
        return self._steps.pop(0) if self._steps else "Final Answer: done"

    def supports_function_calling(self) -> bool:
        return False


class GuideStorage(BaseKnowledgeStorage):
    """Knowledge storage over a fixed list (a real deployment uses a vector store)."""

    docs: list[str] = ["Lyon is two hours from Paris by TGV."]

    def search(self, query: list[str], limit: int = 5, metadata_filter: Any = None,
               score_threshold: float = 0.6) -> list[Any]:
        return [{"id": str(i), "content": d, "metadata": {}, "score": 1.0}
                for i, d in enumerate(self.docs)][:limit]

    async def asearch(self, query: list[str], limit: int = 5, metadata_filter: Any = None,
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


@tool("web_search")
def web_search(query: str) -> str:
    """Search the web."""
    return f"Top result for {query!r}: trains from Paris to Lyon run every 30 minutes."


@tool("timetable_api")
def timetable_api(route: str) -> str:
    """Query the rail timetable API (down in this example)."""
    raise ConnectionError("timetable API unavailable")


def build_crew(manager: ExperienceSyncManager, instance_id: str) -> Crew:
    """A one-agent crew that researches a train connection."""
    llm = ScriptedLLM([
        'Thought: check the timetable\nAction: timetable_api\nAction Input: {"route": '
        '"Paris-Lyon"}',
        'Thought: search instead\nAction: web_search\nAction Input: {"query": '
        '"Paris to Lyon trains"}',
        "Thought: I now know the final answer\nFinal Answer: Trains from Paris to Lyon run "
        "every 30 minutes and take two hours.",
    ])
    planner = Agent(role="Trip Planner", goal="plan train journeys",
                    backstory="knows European rail", llm=llm,
                    tools=[timetable_api, web_search])
    planner.knowledge = Knowledge(collection_name="guide", sources=[], storage=GuideStorage())
    task = Task(name="paris-lyon connection", description="Find trains from Paris to Lyon.",
                expected_output="frequency and duration", agent=planner)
    return Crew(name="Trip Crew", agents=[planner], tasks=[task],
                knowledge=FleetKnowledge(manager, instance_id))  # experience-sync


def run_crew(manager: ExperienceSyncManager, instance_id: str) -> str:
    """Kick the crew off with the experience-sync listener attached."""
    from crewai.events import crewai_event_bus

    # The planner's guide is curated knowledge worth sharing, so this crew opts in
    # to recording what its knowledge retrieval read (off by default).
    with ExperienceSyncListener(manager, instance_id=instance_id,  # experience-sync
                                record_knowledge=True):
        result = build_crew(manager, instance_id).kickoff()
        crewai_event_bus.flush()  # CrewAI runs handlers on a thread pool
    return str(result)


def main() -> None:
    run_example(__doc__, "crewai-trip-1", "crew answered:", run_crew)


if __name__ == "__main__":
    main()
