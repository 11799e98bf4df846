"""The ``Store`` contract, run against every first-party store: ``sqlite`` and ``postgresql``.

The tests are :class:`experience_sync.testing.StoreContract`, the suite a
third-party store runs too (``tests/test_third_party_store.py``). Here each
test gets an empty store of each kind (a SQLite file in a temporary
directory; a schema of its own in the session's PostgreSQL database), the
stricter exception each raises for a duplicate log entry, and replay copies
into the other kind of store. What only one store does lives in
``test_store_sqlite.py`` and ``tests/test_postgres.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from experience_sync.config import MergeStrategyConfig, RetentionConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.retention import compact, expire
from experience_sync.interfaces import Store
from experience_sync.models import EventsRequest, ExperienceEvent
from experience_sync.testing import StoreContract, StoreFactory


def _register_postgres(register_plugin: Callable[..., str]) -> None:
    import experience_sync_postgres.plugin

    register_plugin(experience_sync_postgres.plugin, name="postgres")


# ---------------------------------------------------------------------- compaction and retention

_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _event(i: int, kind: str = "memory", day: int = 0, **data: Any) -> ExperienceEvent:
    payload: dict[str, Any] = {
        "memory": {"content": f"fact {i % 7} about {'tea' if i % 2 else 'cats'} {i // 7}"},
        "skill": {"name": f"skill {i % 3}", "proficiency": (i % 10) / 10},
        "knowledge": {"content": f"the sky is {i % 4}", "subject": f"sky {i % 2}"},
        "interaction": {"summary": f"asked about tea #{i}", "outcome": "ok"},
    }[kind]
    payload.update(data)
    return ExperienceEvent.model_validate(
        {
            "event_id": f"{kind}-{i}",
            "timestamp": _T0 + timedelta(days=day, seconds=i),
            "source_instance": f"i{i % 3}",
            "event_type": kind,
            "data": payload,
        }
    )


def _ingest(engine: MergeEngine, events: list[ExperienceEvent], per_request: int = 3) -> None:
    for start in range(0, len(events), per_request):
        chunk = events[start : start + per_request]
        engine.ingest_events(
            "a", EventsRequest(instance_id=chunk[0].source_instance, events=chunk)
        )


def _workload(first: int, count: int) -> list[ExperienceEvent]:
    kinds = ("memory", "skill", "knowledge", "interaction")
    return [_event(i, kinds[i % 4], day=i // 10) for i in range(first, first + count)]


class CompactionContract:
    """Log compaction and interaction retention, through the engine (needs ``store``, ``replay_target``)."""

    def test_compaction_keeps_replay_equal_to_the_live_state(
        self, store: Store, replay_target: Store
    ) -> None:
        """Snapshot + remaining log replays to the live state, in place and into the other store."""
        engine = MergeEngine(store, MergeStrategyConfig())
        _ingest(engine, _workload(0, 40))
        before = engine.state("a")
        entries = len(list(store.iter_log("a")))
        assert compact(engine, "a") == entries
        log = list(store.iter_log("a"))
        assert [(e.kind, e.request) for e in log] == [("snapshot", before.cursor)]
        assert engine.state("a") == before
        assert compact(engine, "a") == 0  # nothing new to fold
        _ingest(engine, _workload(40, 20))
        live = engine.state("a")
        assert live.cursor > before.cursor
        assert [e.kind for e in store.iter_log("a")][:1] == ["snapshot"]
        # A hub restarted on the store, replay in place, replay into the other kind.
        assert MergeEngine(store, MergeStrategyConfig()).state("a") == live
        assert replay(store, "a", MergeStrategyConfig()) == live
        assert replay(store, "a", MergeStrategyConfig(), target=replay_target) == live
        assert MergeEngine(replay_target, MergeStrategyConfig()).state("a") == live
        assert set(replay_target.iter_compacted("a")) == set(store.iter_compacted("a"))
        # A second compaction folds the first snapshot and the 20 events after it.
        assert compact(engine, "a") == 21
        assert [e.kind for e in store.iter_log("a")] == ["snapshot"]
        assert replay(store, "a", MergeStrategyConfig()) == live

    def test_compaction_keeps_event_ids_known(
        self, store: Store, open_stores: StoreFactory, replay_target: Store
    ) -> None:
        """An event sent before a compaction and again after it is merged once."""
        engine = MergeEngine(store, MergeStrategyConfig())
        events = _workload(0, 12)
        _ingest(engine, events)
        compact(engine, "a")
        live = engine.state("a")
        again = engine.ingest_events("a", EventsRequest(instance_id="i0", events=events[:5]))
        assert sorted(again.duplicate_event_ids) == sorted(e.event_id for e in events[:5])
        assert again.accepted_event_ids == []
        assert engine.state("a") == live
        assert store.seen_events("a", [e.event_id for e in events]) == {
            e.event_id for e in events
        }
        # Known in the store opened again (as by a restarted hub), and in a replay copy.
        assert MergeEngine(open_stores(), MergeStrategyConfig()).ingest_events(
            "a", EventsRequest(instance_id="i1", events=events[5:7])
        ).accepted_event_ids == []
        replay(store, "a", MergeStrategyConfig(), target=replay_target)
        copy = MergeEngine(replay_target, MergeStrategyConfig())
        result = copy.ingest_events("a", EventsRequest(instance_id="i2", events=events))
        assert result.accepted_event_ids == []
        assert copy.state("a") == live

    def test_retention_expires_old_interactions_and_replay_agrees(self, store: Store) -> None:
        """Interactions older than the retention lose their text in the log; the state stays."""
        engine = MergeEngine(store, MergeStrategyConfig())
        _ingest(engine, _workload(0, 80))
        live = engine.state("a")
        now = _T0 + timedelta(days=8)  # events span days 0..7
        config = RetentionConfig(interactions="5d")
        expired = expire(engine, "a", config, now)
        old = [
            e for e in _workload(0, 80)
            if e.event_type == "interaction" and e.timestamp < now - timedelta(days=5)
        ]
        assert expired == len(old) > 0
        bodies = {e.entry_id: e.body for e in store.iter_log("a")}
        for ev in old:
            assert "asked about tea" not in bodies[ev.event_id]
        young = [
            e for e in _workload(0, 80)
            if e.event_type == "interaction" and e.event_id not in {o.event_id for o in old}
        ]
        assert young and all("asked about tea" in bodies[e.event_id] for e in young)
        assert expire(engine, "a", config, now) == 0  # already expired
        assert engine.state("a") == live
        assert replay(store, "a", MergeStrategyConfig()) == live


class TestStoreContract(StoreContract, CompactionContract):
    """The contract on ``sqlite`` and on ``postgresql``."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def store_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """The URL of an empty store of each kind."""
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path}/hub.db"
        url: str = request.getfixturevalue("postgres_url")
        return url

    @pytest.fixture
    def make_store(self, store_url: str, register_plugin: Callable[..., str]) -> StoreFactory:
        """Opens the test's store through the registry (postgres is a plugin)."""
        if store_url.startswith("postgresql"):
            _register_postgres(register_plugin)
        return lambda: open_store(store_url)

    @pytest.fixture
    def integrity_error(self, store: Store) -> type[Exception]:
        """The driver's own integrity error."""
        if store.name == "sqlite":
            return sqlite3.IntegrityError
        import psycopg

        return psycopg.IntegrityError

    @pytest.fixture
    def replay_target(
        self,
        store: Store,
        tmp_path: Path,
        request: pytest.FixtureRequest,
        register_plugin: Callable[..., str],
    ) -> Iterator[Store]:
        """A store of the other kind."""
        if store.name == "sqlite":
            _register_postgres(register_plugin)
            other = open_store(request.getfixturevalue("postgres_url"))
        else:
            other = open_store(f"sqlite:///{tmp_path}/other.db")
        yield other
        other.close()

    def test_single_writer_only_for_sqlite(self, store: Store) -> None:
        """``sqlite`` is the single-writer store; ``postgresql`` keeps write versions."""
        assert (store.agent_version("a") is None) == (store.name == "sqlite")
