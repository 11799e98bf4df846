"""A pull (``state(since=cursor)``) returns exactly the memories changed after
the cursor, whatever happened since the agent was loaded; a pull from before
the load (or from before the hub tracked anew, after most memories changed)
gets the same answer from a scan."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.models import EventsRequest, ExperienceEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
AGENT = "agent"
WORDS = ["refunds", "take", "days", "orders", "ship", "within", "hours", "cache", "expires",
         "after", "minutes", "tickets", "close", "team", "meets", "weekly", "reports", "due"]


def request(rng: random.Random, first: int, n: int) -> EventsRequest:
    events = []
    for i in range(n):
        # Few words: many repeats (merges) and number changes (contradictions).
        words = [*rng.sample(WORDS, 3), str(rng.randint(1, 4))]
        events.append(ExperienceEvent.model_validate({
            "event_id": f"e{first + i}",
            "timestamp": T0 + timedelta(seconds=first + i),
            "source_instance": rng.choice(["i1", "i2", "i3"]),
            "event_type": "memory",
            "data": {"content": " ".join(words)},
        }))
    return EventsRequest(instance_id="i1", events=events)


def expected(engine: MergeEngine, since: int) -> dict[str, object]:
    return {m.memory_id: m.model_dump() for m in engine.state(AGENT).memories if m.version > since}


def check_every_cursor(engine: MergeEngine, cursors: list[int]) -> None:
    for since in cursors:
        got = engine.state(AGENT, since=since).memories
        assert {m.memory_id: m.model_dump() for m in got} == expected(engine, since), since
        assert len(got) == len({m.memory_id for m in got})


def ingest_and_check(
    url: str, rng: random.Random, requests: int, first: int, cursors: list[int]
) -> int:
    """``requests`` random requests on a new engine, then every cursor checked; the next event number."""
    engine = MergeEngine(open_store(url), MergeStrategyConfig())
    try:
        for _ in range(requests):
            size = rng.randint(1, 12)
            cursors.append(engine.ingest_events(AGENT, request(rng, first, size)).cursor)
            first += size
        check_every_cursor(engine, cursors)
    finally:
        engine.close()
    return first


@pytest.mark.parametrize("seed", [1, 2])
def test_a_pull_gets_what_changed_after_its_cursor(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path}/hub.db"
    cursors = [0]
    n = ingest_and_check(url, rng, 40, 0, cursors)
    # A restarted hub: pulls from before its load are answered by a scan,
    # later ones from what changed since.
    ingest_and_check(url, rng, 20, n, cursors)


def test_pulls_stay_exact_once_most_memories_changed(tmp_path: Path) -> None:
    """Past a quarter of the memories (and 4,096) changed, the hub tracks anew
    from that point; pulls from before it scan."""
    engine = MergeEngine(open_store(f"sqlite:///{tmp_path}/hub.db"), MergeStrategyConfig())
    rng = random.Random(3)
    cursors = [0]
    try:
        for r in range(60):
            events = [
                ExperienceEvent.model_validate({
                    "event_id": f"x{r}-{i}",
                    "timestamp": T0 + timedelta(seconds=r * 100 + i),
                    "source_instance": "i1",
                    "event_type": "memory",
                    # Distinct texts, every one new: 6,000 memories in all.
                    "data": {"content": f"zq{r}x{i} " + " ".join(rng.sample(WORDS, 3))},
                })
                for i in range(100)
            ]
            cursors.append(
                engine.ingest_events(AGENT, EventsRequest(instance_id="i1", events=events)).cursor
            )
        check_every_cursor(engine, cursors[::7] + cursors[-3:])
    finally:
        engine.close()
