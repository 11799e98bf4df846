"""A hub bounds the memories it keeps loaded (``serve --max-loaded-memories``):
the least recently used agents are unloaded beyond the bound and loaded from
the store again at their next request, with nothing lost and the same merge
decisions as an agent that stayed loaded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.service import Hub
from experience_sync.models import EventsRequest, ExperienceEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def distinct(i: int) -> str:
    """Memory texts sharing no word with each other (no digits: no number guards)."""
    letters = "bcdfghjklmnpqrstvwxz"
    word, n = "", i + 1
    while n:
        n, r = divmod(n, len(letters))
        word += letters[r]
    return f"zo{word} ka{word} mi{word} and {word}ve"


def memories(agent: str, first: int, n: int, instance: str = "i1") -> EventsRequest:
    return EventsRequest(
        instance_id=instance,
        events=[
            ExperienceEvent.model_validate({
                "event_id": f"{agent}-{first + i}-{instance}",
                "timestamp": T0 + timedelta(seconds=first + i),
                "source_instance": instance,
                "event_type": "memory",
                "data": {"content": distinct(first + i)},
            })
            for i in range(n)
        ],
    )


def engine_at(path: Path, cap: int | None) -> MergeEngine:
    return MergeEngine(
        open_store(f"sqlite:///{path}"), MergeStrategyConfig(), max_loaded_memories=cap
    )


def test_least_recently_used_agents_are_unloaded_beyond_the_bound(tmp_path: Path) -> None:
    engine = engine_at(tmp_path / "hub.db", 25)
    try:
        for agent in ("a", "b", "c"):
            engine.ingest_events(agent, memories(agent, 0, 10))
        # 30 memories loaded would pass 25: "a", used longest ago, went.
        assert engine.loaded_agents() == ["b", "c"]
        assert engine.loaded_memories == 20
        # Using "b" makes "c" the oldest; loading "a" again unloads "c".
        assert len(engine.state("b").memories) == 10
        state_a = engine.state("a")
        assert engine.loaded_agents() == ["b", "a"]
        assert sorted(m.content for m in state_a.memories) == sorted(distinct(i) for i in range(10))
        # Nothing of the unloaded agent was lost.
        assert len(engine.state("c").memories) == 10
    finally:
        engine.close()


def test_a_reloaded_agent_merges_as_one_that_stayed_loaded(tmp_path: Path) -> None:
    bounded = engine_at(tmp_path / "bounded.db", 15)
    unbounded = engine_at(tmp_path / "unbounded.db", None)
    try:
        results = {}
        for name, engine in (("bounded", bounded), ("unbounded", unbounded)):
            engine.ingest_events("a", memories("a", 0, 10))
            engine.ingest_events("b", memories("b", 100, 10))  # the bounded hub unloads "a"
            # The same texts again from another instance, and new ones.
            again = memories("a", 0, 5, instance="i2")
            again.events.extend(memories("a", 10, 3, instance="i2").events)
            results[name] = engine.ingest_events("a", again)
        assert "a" in bounded.loaded_agents() and "b" not in bounded.loaded_agents()
        b, u = results["bounded"], results["unbounded"]
        assert (b.memories_added, b.memories_merged) == (u.memories_added, u.memories_merged) == (3, 5)
        assert [m.model_dump() for m in bounded.state("a").memories] == [
            m.model_dump() for m in unbounded.state("a").memories
        ]
    finally:
        bounded.close()
        unbounded.close()


def test_an_agent_larger_than_the_bound_stays_loaded_while_served(tmp_path: Path) -> None:
    engine = engine_at(tmp_path / "hub.db", 5)
    try:
        engine.ingest_events("big", memories("big", 0, 12))
        assert engine.loaded_agents() == ["big"]
        engine.ingest_events("small", memories("small", 50, 2))
        assert engine.loaded_agents() == ["small"]
        assert len(engine.state("big").memories) == 12
        assert engine.loaded_agents() == ["big"]
    finally:
        engine.close()


def test_the_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_loaded_memories must be at least 1"):
        MergeEngine(open_store(f"sqlite:///{tmp_path}/hub.db"), max_loaded_memories=0)


def test_warm_up_stops_at_the_bound(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = engine_at(tmp_path / "hub.db", None)
    for agent in ("a", "b", "c", "d"):
        engine.ingest_events(agent, memories(agent, 0, 10))
    engine.close()
    hub = Hub.open(url, max_loaded_memories=15)
    try:
        assert hub.engine.max_loaded_memories == 15
        hub.warm()
        # "b" made 20 > 15 and unloaded "a": the warm-up stopped there.
        assert hub.engine.loaded_agents() == ["b"]
    finally:
        hub.close()


def test_serve_refuses_a_bound_below_one() -> None:
    result = CliRunner().invoke(build_cli(), ["serve", "--max-loaded-memories", "0"])
    assert result.exit_code == 2
    assert "--max-loaded-memories" in result.output


def test_what_a_load_built_is_frozen_until_an_agent_is_unloaded(tmp_path: Path) -> None:
    """A loaded agent's objects leave the collector's generations (gc.freeze),
    so no collection after the load walks them; unloading an agent puts them
    back, so that cycles among what it held can be collected."""
    import gc

    path = tmp_path / "hub.db"
    writer = engine_at(path, None)
    for agent in ("a", "b"):
        writer.ingest_events(agent, memories(agent, 0, 10))
    writer.close()
    gc.unfreeze()
    engine = engine_at(path, 15)
    try:
        assert len(engine.state("a").memories) == 10  # loads "a"
        assert gc.get_freeze_count() > 0
        assert len(engine.state("b").memories) == 10  # loads "b", unloads "a"
        assert engine.loaded_agents() == ["b"]
        # "b"'s load froze again, then unloading "a" unfroze everything.
        assert gc.get_freeze_count() == 0
    finally:
        engine.close()
        gc.unfreeze()
