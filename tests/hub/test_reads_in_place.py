"""Reads of an agent that is not loaded are answered by the store.

A hub restarted on a large store loads each agent before it can merge for
it; a page of memories, the skills, the knowledge and a ranked search do not
wait for that load (``Store.reads_in_place``). What they answer is what the
loaded agent answers: ``StoreContract`` checks that for every store that
reads in place; these tests check the moments around a load.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine
from experience_sync.models import EventsRequest
from experience_sync.recall.models import SearchQuery
from experience_sync.stores.sqlite import SQLiteStore
from experience_sync.stores.state import StoredAgent

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TEXTS = [
    "The staging cluster restarts every night at 2 am.",
    "Refunds over 500 euros need a manager's approval.",
    "The customer in Lyon prefers email to phone calls.",
]


def _request(texts: list[str], start: int = 0) -> EventsRequest:
    return EventsRequest.model_validate({
        "instance_id": "i1",
        "events": [
            {"event_id": f"e{start + i}", "timestamp": T0.isoformat(), "source_instance": "i1",
             "event_type": "memory", "data": {"content": t}}
            for i, t in enumerate(texts)
        ],
    })


def _stored(tmp_path: Path) -> str:
    """The URL of a SQLite store holding agent ``a`` with ``TEXTS`` (no engine left open)."""
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = MergeEngine(SQLiteStore(url), MergeStrategyConfig())
    engine.ingest_events("a", _request(TEXTS))
    engine.close()
    return url


class SlowLoadStore(SQLiteStore):
    """A SQLite store whose agent loads wait until the test lets them go on."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loading = threading.Event()
        self.go_on = threading.Event()

    def load_agent(self, agent_id: str) -> StoredAgent:
        self.loading.set()
        assert self.go_on.wait(30)
        return super().load_agent(agent_id)


def test_reads_are_answered_while_the_agent_loads(tmp_path: Path) -> None:
    url = _stored(tmp_path)

    store = SlowLoadStore(url)
    engine = MergeEngine(store, MergeStrategyConfig())
    warm = threading.Thread(target=engine.preload, args=(["a"],))
    warm.start()
    answers: list[Any] = []

    def read() -> None:
        answers.append(engine.memories("a"))
        answers.append(engine.search("a", SearchQuery(q="refunds approval")).hits)
        answers.append((engine.skills("a"), engine.knowledge("a")))

    reader = threading.Thread(target=read)
    try:
        assert store.loading.wait(10)
        # The load holds the agent: the reads would otherwise wait for it.
        reader.start()
        reader.join(10)
        assert len(answers) == 3, "the reads waited for the load"
        assert engine.loaded_agents() == []
    finally:
        store.go_on.set()
        warm.join()
        reader.join()
    memories, total = answers[0]
    assert total == 3 and [m.content for m in memories] == TEXTS
    assert [h.item["content"] for h in answers[1]][:1] == [TEXTS[1]]
    assert answers[2] == ([], [])
    # Loaded now: reads and writes go through the agent in memory.
    assert engine.loaded_agents() == ["a"]
    engine.ingest_events("a", _request(["Backups are kept for 30 days."], start=10))
    assert engine.memories("a")[1] == 4
    engine.close()


def test_a_search_index_behind_the_state_loads_the_agent_first(tmp_path: Path) -> None:
    # A store whose search index lags its state (written before the index
    # existed, or by an older index version): the load brings it up to date,
    # so the search waits for the load rather than answering from the index.
    url = _stored(tmp_path)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute("UPDATE recall_agents SET cursor = 0")
    engine = MergeEngine(SQLiteStore(url), MergeStrategyConfig())
    # A page needs no index: still answered by the store.
    assert engine.memories("a", None, 1, 1)[0][0].content == TEXTS[1]
    assert engine.loaded_agents() == []
    hits = engine.search("a", SearchQuery(q="customer Lyon email")).hits
    assert hits and hits[0].item["content"] == TEXTS[2]
    assert engine.loaded_agents() == ["a"]
    engine.close()


def test_a_filtered_page_loads_the_agent(tmp_path: Path) -> None:
    # A text filter (``q``) is matched against the loaded agent's normalized texts.
    engine = MergeEngine(SQLiteStore(_stored(tmp_path)), MergeStrategyConfig())
    memories, total = engine.memories("a", "LYON")
    assert total == 1 and memories[0].content == TEXTS[2]
    assert engine.loaded_agents() == ["a"]
    engine.close()
