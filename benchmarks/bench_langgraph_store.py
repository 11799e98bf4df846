"""Time a LangGraph ReAct step with ExperienceSyncStore against LangGraph's InMemoryStore.

One step is a whole ``create_react_agent`` invocation whose fake model calls
LangMem's search-memory tool once and then answers: model call, tool call
(``store.search`` with a query), model call. Both stores hold the same
``--memories`` items; ours is an instance connected to a hub on loopback
(started here, no authentication), searched offline from its replica.
Same process, same run, fake model, no network beyond loopback.

    python benchmarks/bench_langgraph_store.py --memories 2000 --steps 200
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from experience_sync_langchain import ExperienceSyncStore
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.hub.web.server import run_in_thread

warnings.filterwarnings("ignore", "Importing Send from langgraph.constants")
warnings.filterwarnings("ignore", "create_react_agent has been moved")
from langgraph.prebuilt import create_react_agent  # noqa: E402
from langmem import create_search_memory_tool  # noqa: E402

TOPICS = ["refund", "invoice", "shipping", "login", "password", "payment", "delivery",
          "warranty", "subscription", "discount"]


class Scripted(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Scripted:  # type: ignore[override]
        return self


def script(steps: int) -> list[AIMessage]:
    out: list[AIMessage] = []
    for i in range(steps):
        query = f"{TOPICS[i % len(TOPICS)]} problem number {i % 97}"
        out.append(AIMessage(content="", tool_calls=[
            {"name": "search_memory", "args": {"query": query, "limit": 5}, "id": f"c{i}"}]))
        out.append(AIMessage(content="done"))
    return out


def lessons(n: int) -> list[str]:
    # Distinct texts (templated ones would be merged as duplicates by the hub).
    rng = random.Random(7)
    vocab = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3))
             for _ in range(3000)]
    return [f"{TOPICS[i % len(TOPICS)]} problem {i % 97}: " + " ".join(rng.sample(vocab, 12))
            for i in range(n)]


def fill(store: BaseStore, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        store.put(("memories",), f"m{i}", {"content": text})


def time_steps(store: BaseStore, steps: int) -> list[float]:
    agent = create_react_agent(Scripted(messages=iter(script(steps + 3))),
                               [create_search_memory_tool(namespace=("memories",))], store=store)
    agent.invoke({"messages": [("user", "warm up")]})
    times = []
    for i in range(steps):
        start = time.perf_counter()
        agent.invoke({"messages": [("user", f"question {i}")]})
        times.append(time.perf_counter() - start)
    return times


def report(name: str, times: list[float]) -> float:
    ms = sorted(t * 1000 for t in times)
    median = statistics.median(ms)
    print(f"{name:<22} median {median:7.2f} ms   p90 {ms[int(len(ms) * 0.9)]:7.2f} ms   "
          f"({len(ms)} steps)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, run_in_thread(
        f"sqlite:///{tmp}/hub.db", auth=False
    ) as hub:
        config = load_config(environ={}, cwd=Path(tmp), recall={"pull_interval": 0.5})
        manager = ExperienceSyncManager(config, data_dir=Path(tmp) / "fleet")
        manager.initialize_sync("bench", agent_id="bench-agent", endpoint=hub.url)
        try:
            ours = ExperienceSyncStore(manager, "bench")
            texts = lessons(args.memories)
            fill(ours, texts)
            manager.flush("bench", timeout=120)
            manager.refresh("bench", timeout=60)  # merged memories in the replica
            reference = InMemoryStore()
            fill(reference, texts)

            merged = len(manager.pull("bench-agent", instance_id="bench").memories)
            print(f"{args.memories} memories put ({merged} after the hub's merge); "
                  "one ReAct step = model, search_memory tool, model")
            print("InMemoryStore has no index here: it ignores the query (no ranking); "
                  "ours ranks with BM25 over the replica")
            base = report("InMemoryStore", time_steps(reference, args.steps))
            mine = report("ExperienceSyncStore", time_steps(ours, args.steps))
            print(f"ratio {mine / base:.2f}x")
        finally:
            manager.shutdown(timeout=5)


if __name__ == "__main__":
    main()
