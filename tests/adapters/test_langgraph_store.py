"""ExperienceSyncStore: a LangGraph ``BaseStore`` shared by a fleet, against a real hub.

Two instances, each with its own data directory, connect to a real hub on
loopback and pull every 0.2 s. Agents are real LangGraph ReAct agents
(``langgraph.prebuilt.create_react_agent``) with LangMem's memory tools or a
tool calling ``get_store()``, driven by a fake chat model that emits scripted
tool calls and keeps every prompt it was given, so the tests can check that
what one instance learned reached the other's model.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from experience_sync_langchain import ExperienceSyncStore
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import tool
from langgraph.config import get_store
from langgraph.prebuilt import create_react_agent
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchItem,
    SearchOp,
)
from pydantic import Field

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.hub.web.server import HubServer, run_in_thread

with warnings.catch_warnings():
    # LangMem's trustcall imports Send from its old place (not our code).
    warnings.filterwarnings("ignore", "Importing Send from langgraph.constants")
    from langmem import create_manage_memory_tool, create_search_memory_tool

pytestmark = [
    # LangGraph 1.x points create_react_agent users at langchain.agents, and
    # LangMem's trustcall imports Send from its old place: neither is ours.
    pytest.mark.filterwarnings("ignore:create_react_agent has been moved"),
    pytest.mark.filterwarnings("ignore:Importing Send from langgraph.constants"),
]

AGENT = "support-agent"
LESSON = "Refunds over 500 EUR need a manager's approval before they are issued."


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that can be bound to tools and keeps the prompts it saw."""

    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def saw(self, text: str) -> bool:
        """Whether ``text`` appeared in the last prompt."""
        return any(text in str(m.content) for m in self.prompts[-1])


def model(*replies: AIMessage) -> ScriptedModel:
    return ScriptedModel(messages=iter(replies))


def call(name: str, args: dict[str, Any], call_id: str = "c1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


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


def found(store: ExperienceSyncStore, query: str, text: str,
          namespace: tuple[str, ...] = ("memories",)) -> list[SearchItem]:
    """The store's search hits for ``query`` once one of them holds ``text``."""
    items = store.search(namespace, query=query)
    return items if any(text in str(i.value) for i in items) else []


# --------------------------------------------------------------------------- across the fleet


def test_langmem_memory_made_on_one_instance_reaches_another_react_agent(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    store_a, store_b = ExperienceSyncStore(a, "bot-a"), ExperienceSyncStore(b, "bot-b")

    # A's agent decides to remember the lesson through LangMem's manage-memory tool.
    model_a = model(call("manage_memory", {"content": LESSON, "action": "create"}),
                    AIMessage(content="Noted."))
    agent_a = create_react_agent(model_a, [create_manage_memory_tool(namespace=("memories",))],
                                 store=store_a)
    out = agent_a.invoke({"messages": [("user", "Remember: big refunds need a manager.")]})
    key = re.search(r"created memory (\S+)", out["messages"][-2].content).group(1)  # type: ignore[union-attr]
    assert store_a.get(("memories",), key).value == {"content": LESSON}  # type: ignore[union-attr]

    # B's agent searches its memories with LangMem's search tool: the lesson is there.
    wait_for(lambda: found(store_b, "refund approval", LESSON))
    model_b = model(call("search_memory", {"query": "refund approval"}),
                    AIMessage(content="A manager must approve it."))
    agent_b = create_react_agent(model_b, [create_search_memory_tool(namespace=("memories",))],
                                 store=store_b)
    answer = agent_b.invoke({"messages": [("user", "Can I refund 800 EUR?")]})
    assert answer["messages"][-1].content == "A manager must approve it."
    assert model_b.saw(LESSON)  # the tool result in the model's second prompt
    assert key in str(model_b.prompts[-1][-1].content)  # same key on every instance

    (item,) = store_b.search(("memories",), query="refund approval")
    assert (item.namespace, item.key, item.value) == (("memories",), key, {"content": LESSON})
    assert item.score is not None and item.score > 0

    # The hub goes down: B still answers from its replica.
    fleet.hub.stop()
    offline = model(call("search_memory", {"query": "manager approval refunds"}, "c2"),
                    AIMessage(content="Still: a manager approves."))
    agent_offline = create_react_agent(
        offline, [create_search_memory_tool(namespace=("memories",))], store=store_b)
    agent_offline.invoke({"messages": [("user", "And 600 EUR?")]})
    assert offline.saw(LESSON)


def test_get_store_inside_a_tool_reads_what_another_instance_put(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    ExperienceSyncStore(a, "bot-a").put(("kb", "billing"), "refund-rule", {"content": LESSON})
    store_b = ExperienceSyncStore(b, "bot-b")

    @tool
    def recall(query: str) -> str:
        """Look up what the team learned."""
        items = get_store().search(("kb",), query=query, limit=3)
        return "\n".join(str(i.value["content"]) for i in items) or "nothing"

    wait_for(lambda: found(store_b, "refunds", LESSON, ("kb",)))
    model_b = model(call("recall", {"query": "refunds over 500"}), AIMessage(content="Ask a manager."))
    agent = create_react_agent(model_b, [recall], store=store_b)
    agent.invoke({"messages": [("user", "Refund 700 EUR?")]})
    assert model_b.saw(LESSON)
    (item,) = store_b.search(("kb",), query="refunds")
    assert (item.namespace, item.key) == (("kb", "billing"), "refund-rule")


def test_async_agent_and_learning_recorded_outside_any_store(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    a.record_memory("bot-a", "The payments provider is down every Sunday night.", tags=["ops"])
    shared, private = ExperienceSyncStore(b, "bot-b"), ExperienceSyncStore(
        b, "bot-b", fleet_learning=False)

    (item,) = wait_for(lambda: shared.search(("memories", "b"), query="payments sunday"))
    assert item.namespace == ("memories", "b")  # shown where it was searched for
    assert item.key.startswith("memory:")
    assert item.value == {"content": "The payments provider is down every Sunday night."}
    assert shared.get(("memories", "b"), item.key) == item  # what a search returned
    assert private.search(("memories", "b"), query="payments sunday") == []

    model_b = model(call("search_memory", {"query": "payments sunday"}),
                    AIMessage(content="Avoid Sunday night."))
    agent = create_react_agent(
        model_b, [create_search_memory_tool(namespace=("memories", "b"))], store=shared)
    asyncio.run(agent.ainvoke({"messages": [("user", "When to run payouts?")]}))
    assert model_b.saw("down every Sunday night")


def test_a_key_put_again_is_one_item_with_the_latest_value_everywhere(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    store_a, store_b = ExperienceSyncStore(a, "bot-a"), ExperienceSyncStore(b, "bot-b")
    store_a.put(("memories",), "office", {"content": "The Lyon office opens at 8 on weekdays."})
    wait_for(lambda: found(store_b, "Lyon office opens", "at 8"))
    store_a.put(("memories",), "office", {"content": "The Lyon office opens at 9 on weekdays."})

    items = store_a.search(("memories",), query="Lyon office opens")
    assert [i.value["content"] for i in items] == ["The Lyon office opens at 9 on weekdays."]
    wait_for(lambda: [i.value["content"] for i in store_b.search(("memories",),
                                                                 query="Lyon office opens")]
             == ["The Lyon office opens at 9 on weekdays."])


def test_delete_is_local_to_the_store(fleet: Fleet) -> None:
    a, b = fleet.instance("bot-a"), fleet.instance("bot-b")
    store_a, store_b = ExperienceSyncStore(a, "bot-a"), ExperienceSyncStore(b, "bot-b")
    store_a.put(("memories",), "k", {"content": LESSON})
    wait_for(lambda: found(store_b, "refund approval", LESSON))

    store_a.delete(("memories",), "k")
    assert store_a.get(("memories",), "k") is None
    assert store_a.search(("memories",), query="refund approval") == []
    # the recorded memory stays at the hub: other instances still find it
    assert found(store_b, "refund approval", LESSON)
    store_b.delete(("memories",), "k")
    assert store_b.search(("memories",), query="refund approval") == []


# --------------------------------------------------------------------------- the store contract


@pytest.fixture
def store(fleet: Fleet) -> ExperienceSyncStore:
    return ExperienceSyncStore(fleet.instance("solo"), "solo")


def test_put_get_and_update_keep_the_value_and_times(store: ExperienceSyncStore) -> None:
    value = {"content": "Use the EU endpoint for German customers.", "team": "billing", "n": 3}
    store.put(("docs", "u1"), "eu", value)
    first = store.get(("docs", "u1"), "eu")
    assert isinstance(first, Item)
    assert (first.namespace, first.key, first.value) == (("docs", "u1"), "eu", value)
    assert store.get(("docs", "u1"), "other") is None
    assert store.get(("docs",), "eu") is None

    store.put(("docs", "u1"), "eu", {**value, "n": 4})
    second = store.get(("docs", "u1"), "eu")
    assert second is not None and second.value["n"] == 4
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at


def test_search_ranks_filters_and_pages(store: ExperienceSyncStore) -> None:
    texts = {
        "a": ("The staging database is reset every Monday.", "ops", 1),
        "b": ("The production database backup runs nightly.", "ops", 2),
        "c": ("The database password rotates monthly.", "security", 3),
        "d": ("Lunch is served at noon.", "office", 4),
    }
    for key, (text, team, n) in texts.items():
        store.put(("docs", team), key, {"content": text, "team": team, "n": n})

    ranked = store.search(("docs",), query="database")
    assert {i.key for i in ranked} == {"a", "b", "c"}  # read-your-writes, before any merge
    assert all(isinstance(i, SearchItem) and i.score is not None for i in ranked)
    assert [i.score for i in ranked] == sorted((i.score for i in ranked), reverse=True)  # type: ignore[misc]
    assert ranked[0].value == {"content": texts[ranked[0].key][0],
                               "team": texts[ranked[0].key][1], "n": texts[ranked[0].key][2]}

    assert [i.key for i in store.search(("docs", "ops"), query="database")] != []
    assert {i.key for i in store.search(("docs", "ops"), query="database")} == {"a", "b"}
    assert {i.key for i in store.search(("docs",), query="database",
                                        filter={"team": "ops"})} == {"a", "b"}
    assert {i.key for i in store.search(("docs",), query="database",
                                        filter={"n": {"$gte": 2}})} == {"b", "c"}
    assert {i.key for i in store.search(("docs",), filter={"team": {"$ne": "ops"}})} == {"c", "d"}

    page1 = store.search(("docs",), query="database", limit=2)
    page2 = store.search(("docs",), query="database", limit=2, offset=2)
    assert len(page1) == 2 and len(page2) == 1
    assert [i.key for i in page1 + page2] == [i.key for i in ranked]

    listed = store.search(("docs",), limit=10)
    assert {i.key for i in listed} == {"a", "b", "c", "d"}
    assert all(i.score is None for i in listed)
    assert [i.key for i in store.search(("docs",), limit=1, offset=1)] == [listed[1].key]
    assert store.search(("nowhere",), query="database") == []


def test_list_namespaces(store: ExperienceSyncStore) -> None:
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z", "b", "c")]:
        store.put(ns, "k", {"content": "something " + "-".join(ns)})
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "x"),
                                       ("z", "b", "c")]
    assert store.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert store.list_namespaces(suffix=("b", "c")) == [("a", "b", "c"), ("z", "b", "c")]
    assert store.list_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d"),
                                                        ("z", "b", "c")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("z",)]
    assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "x")]
    store.delete(("a", "x"), "k")
    assert ("a", "x") not in store.list_namespaces()


def test_batch_and_abatch_run_every_op_in_order(store: ExperienceSyncStore) -> None:
    results = store.batch([
        PutOp(("t",), "one", {"content": "The first rule of the batch."}),
        GetOp(("t",), "one"),
        SearchOp(("t",), query="first rule"),
        ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("t",)),)),
        PutOp(("t",), "one", None),
        GetOp(("t",), "one"),
    ])
    assert results[0] is None and results[4] is None
    assert isinstance(results[1], Item) and results[1].value == {
        "content": "The first rule of the batch."}
    assert [i.key for i in results[2]] == ["one"]  # type: ignore[union-attr]
    assert results[3] == [("t",)]
    assert results[5] is None

    async def run() -> list[Any]:
        await store.aput(("t",), "two", {"content": "The second rule, async."})
        return await store.abatch([GetOp(("t",), "two"), SearchOp(("t",), query="second rule")])

    got, searched = asyncio.run(run())
    assert got.value == {"content": "The second rule, async."}
    assert [i.key for i in searched] == ["two"]
    assert asyncio.run(store.aget(("t",), "two")) == got
    assert [i.key for i in asyncio.run(store.asearch(("t",), query="second"))] == ["two"]
    assert asyncio.run(store.alist_namespaces()) == [("t",)]


def test_put_records_a_tagged_memory_that_reaches_the_hub(fleet: Fleet) -> None:
    manager = fleet.instance("solo")
    store = ExperienceSyncStore(manager, "solo", tags=["support"])
    store.put(("memories", "u1"), "k1", {"content": LESSON, "extra": 1})
    store.put(("memories", "u1"), "k2", {"note": "no content field"})
    assert manager.flush("solo", timeout=10)
    state = manager.pull(AGENT, instance_id="solo")
    memories = {m.content: m for m in state.memories}
    tags = set(memories[LESSON].tags)
    assert {"langgraph", "support", "lg.ns:memories", "lg.ns:memories.u1",
            'lg.item:["memories", "u1", "k1"]'} <= tags
    assert '{"note": "no content field"}' in memories


def test_invalid_namespaces_are_refused(store: ExperienceSyncStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"content": "x"})
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(("a.b",), "k", {"content": "x"})])
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph",), "k", {"content": "x"})


def test_the_adapter_imports_without_langgraph_and_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['langgraph'] = None\n"
        "import experience_sync_langchain as xs\n"
        "xs.ExperienceSyncRetriever\n"
        "try:\n"
        "    xs.ExperienceSyncStore\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "experience-sync-langchain[langgraph]" in out.stdout
