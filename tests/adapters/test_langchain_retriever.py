"""ExperienceSyncRetriever in LCEL chains, against a real hub on loopback.

Instance A learns (a memory, a skill); instance B's chain retrieves it from its
replica into the prompt of a fake chat model, also with the hub down. The
callback handler records the retrieved documents as knowledge only when told to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from experience_sync_langchain import ExperienceSyncCallbackHandler, ExperienceSyncRetriever
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from pydantic import Field

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "support-agent"
LESSON = "Refunds over 500 EUR need a manager's approval before they are issued."


class PromptKeepingModel(FakeListChatModel):
    """A fake chat model that keeps every prompt it was given."""

    prompts: list[str] = Field(default_factory=list)

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.prompts.append("\n".join(str(m.content) for m in messages))
        return super()._call(messages, *args, **kwargs)


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(0.05)


@dataclass
class Fleet:
    hub: HubServer
    instance: Callable[[str], ExperienceSyncManager]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0.2})
    managers: list[ExperienceSyncManager] = []
    with run_in_thread(f"sqlite:///{tmp_path}/hub.db", auth=False) as hub:

        def instance(name: str) -> ExperienceSyncManager:
            manager = ExperienceSyncManager(config, data_dir=tmp_path / name)
            manager.initialize_sync(name, agent_id=AGENT, endpoint=hub.url)
            managers.append(manager)
            return manager

        try:
            yield Fleet(hub, instance)
        finally:
            for manager in managers:
                manager.shutdown(timeout=2)


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"- {d.page_content}" for d in docs)


def rag_chain(retriever: ExperienceSyncRetriever, model: PromptKeepingModel) -> Any:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Use what the team learned:\n{context}"),
        ("human", "{question}"),
    ])
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )


def test_what_a_learned_reaches_b_chain_prompt_also_with_the_hub_down(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    a.record_memory("bot-a", LESSON, tags=["refunds"])
    for ok in (True, True, False):
        a.record_skill_use("bot-a", "refund_lookup", success=ok, context="refund approval")

    retriever = ExperienceSyncRetriever(manager=b, instance_id="bot-b", k=5)
    docs = wait_for(lambda: [d for d in retriever.invoke("refund approval")
                             if d.metadata["kind"] == "memory"])
    (doc,) = docs
    assert doc.page_content == LESSON
    assert doc.metadata["id"] and doc.metadata["id"] == doc.id
    assert doc.metadata["score"] > 0
    assert doc.metadata["source_instances"] == ["bot-a"]
    assert doc.metadata["local"] is False
    assert "bot-a" not in doc.page_content

    model = PromptKeepingModel(responses=["Ask a manager first."])
    answer = rag_chain(retriever, model).invoke("Can I refund 800 EUR?")
    assert answer == "Ask a manager first."
    assert LESSON in model.prompts[-1]

    fleet.hub.stop()
    offline = PromptKeepingModel(responses=["Still: a manager."])
    rag_chain(retriever, offline).invoke("Refund approval for 900 EUR?")
    assert LESSON in offline.prompts[-1]


def test_kinds_tags_and_k_narrow_the_documents(fleet: Fleet) -> None:
    b = fleet.instance("bot-b")
    b.record_memory("bot-b", LESSON, tags=["refunds"])
    b.record_memory("bot-b", "Refund requests arrive mostly on Mondays.", tags=["stats"])
    b.record_skill_use("bot-b", "refund_lookup", success=True, context="refund requests")

    def kinds(**fields: Any) -> list[str]:
        r = ExperienceSyncRetriever(manager=b, instance_id="bot-b", **fields)
        return [d.metadata["kind"] for d in r.invoke("refund requests approval")]

    wait_for(lambda: "skill" in kinds())  # the skill arrives with the first merge
    assert sorted(kinds()) == ["memory", "memory", "skill"]
    assert kinds(kinds=["memory"]) == ["memory", "memory"]
    assert kinds(kinds=["skill"]) == ["skill"]
    assert kinds(k=1) in (["memory"], ["skill"])
    r = ExperienceSyncRetriever(manager=b, instance_id="bot-b", tags=["refunds"])
    assert [d.page_content for d in r.invoke("refund")] == [LESSON]
    with pytest.raises(ValueError):
        ExperienceSyncRetriever(manager=b, instance_id="bot-b", k=0)


def test_retrieved_documents_become_knowledge_only_when_asked(fleet: Fleet) -> None:
    b = fleet.instance("bot-b")
    b.record_memory("bot-b", LESSON)
    retriever = ExperienceSyncRetriever(manager=b, instance_id="bot-b")
    assert retriever.invoke("refund approval")  # read-your-writes

    default = ExperienceSyncCallbackHandler(b, "bot-b", record_runs=False)
    retriever.invoke("refund approval", config={"callbacks": [default]})
    assert default.recorded == 0 and default.errors == 0

    keen = ExperienceSyncCallbackHandler(b, "bot-b", record_runs=False, record_retrievals=True)
    retriever.invoke("refund approval", config={"callbacks": [keen]})
    assert keen.recorded == 1 and keen.errors == 0
    assert b.flush("bot-b", timeout=10)
    state = b.pull(AGENT, instance_id="bot-b")
    assert [k.content for k in state.knowledge] == [LESSON]


def test_async_retrieval(fleet: Fleet) -> None:
    b = fleet.instance("bot-b")
    b.record_memory("bot-b", LESSON)
    retriever = ExperienceSyncRetriever(manager=b, instance_id="bot-b")
    docs = asyncio.run(retriever.ainvoke("refund approval"))
    assert [d.page_content for d in docs] == [LESSON]
