"""An instance's local replica: what ``manager.search`` answers from.

Real hubs on loopback, real outboxes and replica files in temporary
directories; instances are separate managers, as separate processes would be.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "support-bot"
TOPICS = [
    "parking", "billing", "refunds", "shipping", "passwords", "invoices", "returns",
    "warranty", "coupons", "gift cards", "subscriptions", "delivery", "privacy", "accessibility",
    "careers", "press", "partnerships", "security", "outages", "pricing",
]


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    with run_in_thread(f"sqlite:///{tmp_path}/hub.db", auth=False) as server:
        yield server


@pytest.fixture
def make_instance(tmp_path: Path) -> Iterator[Callable[..., ExperienceSyncManager]]:
    managers: list[ExperienceSyncManager] = []

    def _make(instance: str, url: str, **recall: Any) -> ExperienceSyncManager:
        config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0.2, **recall})
        manager = ExperienceSyncManager(config, data_dir=tmp_path / "instances")
        manager.initialize_sync(instance, agent_id=AGENT, endpoint=url)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        manager.shutdown(timeout=2)


def texts(manager: ExperienceSyncManager, instance: str, q: str, **kw: Any) -> list[str]:
    return [h.text for h in manager.search(instance, q, **kw)]


def test_a_lesson_of_one_instance_reaches_another_and_survives_the_hub_going_down(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager]
) -> None:
    a = make_instance("a", hub.url)
    b = make_instance("b", hub.url)
    a.record_memory("a", "The payments API is down every Sunday night; retry on Monday")
    # B finds it by other words, from its own replica, once pulled.
    (hit,) = wait_for(lambda: b.search("b", "payment outage down"))
    assert hit.kind == "memory" and not hit.provenance.local
    assert hit.provenance.source_instances == ["a"]
    hub.stop()
    assert texts(b, "b", "payments sunday") == [
        "The payments API is down every Sunday night; retry on Monday"]
    assert b.refresh("b", timeout=1) is False  # the hub is down; the replica keeps serving
    assert texts(b, "b", "payments sunday")


def test_read_your_writes_then_the_merged_item_replaces_the_local_one(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager]
) -> None:
    a = make_instance("a", hub.url, pull_interval=0)
    hub.stop()  # nothing can be acknowledged
    a.record_memory("a", "The user is allergic to peanuts")
    a.record_knowledge("a", "Refunds take five business days", subject="refund delay")
    a.record_skill_use("a", "refunds", success=True)  # skills are not searchable until merged
    (memory,) = a.search("a", "peanuts allergy")
    assert memory.provenance.local and memory.id.startswith("event:")
    (fact,) = a.search("a", "how long do refunds take", kinds=["knowledge"])
    assert fact.provenance.local and fact.text == "refund delay: Refunds take five business days"
    hub.start()
    assert a.flush("a", timeout=10)
    assert a.refresh("a")
    hits = a.search("a", "peanuts allergy")
    assert [(h.text, h.provenance.local) for h in hits] == [("The user is allergic to peanuts", False)]
    assert hits[0].id.startswith("m")
    # The knowledge item is pending at the hub (one instance): hidden by default now.
    assert a.search("a", "refunds", kinds=["knowledge"]) == []
    (pending,) = a.search("a", "refunds", kinds=["knowledge"], knowledge_status="pending")
    assert pending.provenance.status == "pending" and not pending.provenance.local
    (skill,) = a.search("a", "refunds", kinds=["skill"])
    assert skill.item["usage"]["total_invocations"] == 1


def test_a_new_instance_starts_from_the_source_agents_state(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager]
) -> None:
    a = make_instance("a", hub.url)
    for topic in TOPICS:
        a.record_memory("a", f"Questions about {topic} go to the {topic} desk")
    assert a.flush("a", timeout=10)
    late = make_instance("late", hub.url, pull_interval=0)  # only the first pull: the deploy
    wait_for(lambda: late.search("late", "parking"))
    assert texts(late, "late", "parking questions")[0] == "Questions about parking go to the parking desk"
    assert len(late.search("late", "questions desk", k=100)) == len(TOPICS)


def test_the_replica_survives_a_restart_and_serves_before_any_pull(
    tmp_path: Path, make_instance: Callable[..., ExperienceSyncManager]
) -> None:
    with run_in_thread(f"sqlite:///{tmp_path}/hub.db", auth=False) as server:
        a = make_instance("a", server.url)
        b = make_instance("b", server.url)
        a.record_memory("a", "Escalate billing disputes to the finance team")
        wait_for(lambda: b.search("b", "billing disputes"))
        url = server.url
        b.shutdown(timeout=2)
    # The hub is gone for good; b comes back and still knows.
    b2 = make_instance("b", url)
    assert texts(b2, "b", "who handles billing disputes") == [
        "Escalate billing disputes to the finance team"]
    assert (tmp_path / "instances" / "b" / "replica.db").exists()


def test_the_replica_is_bounded(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager], tmp_path: Path
) -> None:
    a = make_instance("a", hub.url)
    for topic in TOPICS:
        a.record_memory("a", f"Questions about {topic} go to the {topic} desk")
    assert a.flush("a", timeout=10)
    small = make_instance("small", hub.url, pull_interval=0, max_memories=10)
    assert small.refresh("small")
    db = sqlite3.connect(tmp_path / "instances" / "small" / "replica.db")
    try:
        (count,) = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'recall_docs_%'"
        ).fetchone()
        assert count == 1
        (table,) = db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'recall_docs_%'"
        ).fetchone()
        (kept,) = db.execute(f"SELECT count(*) FROM {table} WHERE kind = 'memory'").fetchone()
    finally:
        db.close()
    assert kept == 10
    assert len(small.search("small", "questions desk", k=50)) == 10


def test_search_rejects_bad_arguments(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager]
) -> None:
    from pydantic import ValidationError

    a = make_instance("a", hub.url)
    with pytest.raises(ValidationError, match="q"):
        a.search("a", "   ")
    with pytest.raises(ValidationError, match="k"):
        a.search("a", "x", k=0)
    with pytest.raises(ValidationError, match="kinds"):
        a.search("a", "x", kinds=["memories"])
    from experience_sync.errors import NotInitializedError

    with pytest.raises(NotInitializedError):
        a.search("nobody", "x")


def test_tool_reliability_across_the_fleet_under_one_name(
    hub: HubServer, make_instance: Callable[..., ExperienceSyncManager], tmp_path: Path
) -> None:
    from experience_sync.api import render_hits

    aliases = {"tavily_search": "web_search"}
    managers = []
    for name, tool, ok in (("lc", "tavily_search", False), ("crew", "web_search", True)):
        config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0.2},
                             merge_strategy={"skill_aliases": aliases})
        manager = ExperienceSyncManager(config, data_dir=tmp_path / "instances")
        manager.initialize_sync(name, agent_id=AGENT, endpoint=hub.url)
        managers.append(manager)
        manager.record_skill_use(name, tool, success=ok)
        manager.record_skill_use(name, tool, success=True)
    try:
        for m, name in zip(managers, ("lc", "crew"), strict=True):
            assert m.flush(name, timeout=10)
        crew = managers[1]

        def merged() -> list[Any]:
            hits = crew.search("crew", "web search", kinds=["skill"])
            return [h for h in hits if h.item["usage"]["total_invocations"] == 4]

        (hit,) = wait_for(merged)
        assert render_hits([hit], header=None) == (
            "- web_search: succeeded in 75% of 4 uses across the fleet")
    finally:
        for m in managers:
            m.shutdown(timeout=2)
