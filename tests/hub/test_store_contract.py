"""The ``Store`` contract, run against every store: ``sqlite`` and ``postgresql``.

Each test gets an empty store of each kind (a SQLite file in a temporary
directory; a schema of its own in the session's PostgreSQL database), and the
engine tests run the merge engine on it. What only one store does lives in
``test_store_sqlite.py`` and ``tests/test_postgres.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.state import ChangeSet, LogEntry, StoredRow
from experience_sync.interfaces import Store, TokenRecord
from experience_sync.models import EventsRequest, ExperienceEvent, MergeResult

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

StoreFactory = Callable[[], Store]


def entry(i: int, request: int = 1, unit: str | None = None) -> LogEntry:
    return LogEntry(f"e{i}", "event", f'{{"x": {i}}}', unit, "i1", request)


def ev(i: int, content: str) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": f"e{i}",
            "timestamp": T0,
            "source_instance": "i1",
            "event_type": "memory",
            "data": {"content": content},
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_stores(store_url: str, register_plugin: Callable[..., str]) -> Iterator[StoreFactory]:
    """``open_stores()`` opens the test's store (again: another connection, as another hub would)."""
    if store_url.startswith("postgresql"):
        import experience_sync_postgres.plugin

        register_plugin(experience_sync_postgres.plugin, name="postgres")
    opened: list[Store] = []

    def _open() -> Store:
        s = open_store(store_url)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_stores: StoreFactory) -> Store:
    return open_stores()


@pytest.fixture
def integrity_error(store: Store) -> type[Exception]:
    """What the store raises for a log entry id it already holds."""
    if store.name == "sqlite":
        return sqlite3.IntegrityError
    import psycopg

    return psycopg.IntegrityError


def test_commit_log_rows_units_and_reads(store: Store) -> None:
    result = MergeResult(agent_id="a", unit_id="b1", memories_added=2)
    store.commit(
        "a",
        ChangeSet(
            cursor=1,
            log=[entry(1, unit="b1"), entry(2, unit="b1")],
            rows={
                "memories": [StoredRow("m1", 1, "{}", "h1", b"\x00\x00\x80?", "likes tea")],
                "skills": [StoredRow("s1", 1, '{"s": 1}')],
            },
            meta='{"stats": {}}',
            units=[("b1", result)],
        ),
    )
    store.commit(
        "a",
        ChangeSet(
            cursor=2, log=[entry(3, request=2)], rows={"skills": [StoredRow("s1", 2, '{"s": 2}')]}
        ),
    )
    assert store.seen_events("a", ["e1", "e3", "e9"]) == {"e1", "e3"}
    assert store.seen_events("a", []) == set()
    assert store.seen_events("b", ["e1"]) == set()
    assert store.applied_unit("a", "b1") == result
    assert store.applied_unit("a", "b2") is None
    assert store.applied_unit("b", "b1") is None
    loaded = store.load_agent("a")
    assert loaded.cursor == 2 and loaded.meta == '{"stats": {}}'
    assert loaded.rows["skills"] == [StoredRow("s1", 2, '{"s": 2}')]
    assert loaded.rows["memories"] == [
        StoredRow("m1", 1, "{}", "h1", b"\x00\x00\x80?", "likes tea")
    ]
    assert [e.entry_id for e in store.iter_log("a")] == ["e1", "e2", "e3"]
    assert [e.request for e in store.iter_log("a")] == [1, 1, 2]
    assert [e.unit_id for e in store.iter_log("a")] == ["b1", "b1", None]
    assert store.agents() == ["a"]
    assert store.load_agent("nobody").cursor == 0
    assert all(rows == [] for rows in store.load_agent("nobody").rows.values())


def test_meta_is_kept_when_a_commit_brings_none(store: Store) -> None:
    store.commit("a", ChangeSet(cursor=1, log=[entry(1)], meta='{"stats": {"n": 1}}'))
    store.commit("a", ChangeSet(cursor=1, rows={"instances": [StoredRow("i1", 0, "{}")]}))
    assert store.load_agent("a").meta == '{"stats": {"n": 1}}'


def test_rows_load_in_the_order_they_were_first_written(store: Store) -> None:
    keys = ["m9", "m1", "m5", "m3"]
    store.commit("a", ChangeSet(cursor=1, rows={"memories": [StoredRow(k, 1, "{}") for k in keys]}))
    # Rewriting a row keeps its place.
    store.commit("a", ChangeSet(cursor=2, rows={"memories": [StoredRow("m1", 2, '{"v": 2}')]}))
    assert [r.key for r in store.load_agent("a").rows["memories"]] == keys
    assert store.load_agent("a").rows["memories"][1].body == '{"v": 2}'


def test_log_order_is_per_agent_arrival_order(store: Store) -> None:
    for r in range(1, 6):
        store.commit("a", ChangeSet(cursor=r, log=[entry(r * 10 + i, r) for i in range(3)]))
        store.commit("b", ChangeSet(cursor=r, log=[entry(r * 10 + i, r) for i in range(2)]))
    assert [e.entry_id for e in store.iter_log("a")] == [
        f"e{r * 10 + i}" for r in range(1, 6) for i in range(3)
    ]
    assert len(list(store.iter_log("b"))) == 10
    assert store.agents() == ["a", "b"]


def test_commit_is_one_transaction(store: Store, integrity_error: type[Exception]) -> None:
    store.commit("a", ChangeSet(cursor=1, log=[entry(1)]))
    with pytest.raises(integrity_error):  # e1 again: the log holds each id once per agent
        store.commit(
            "a",
            ChangeSet(
                cursor=2,
                log=[entry(2), entry(1)],
                rows={"skills": [StoredRow("s1", 2, "{}")]},
                units=[("b1", MergeResult())],
            ),
        )
    assert [e.entry_id for e in store.iter_log("a")] == ["e1"]
    assert store.load_agent("a").rows["skills"] == []
    assert store.load_agent("a").cursor == 1
    assert store.applied_unit("a", "b1") is None
    assert store.seen_events("a", ["e2"]) == set()
    with pytest.raises(integrity_error):  # one id twice in one commit
        store.commit("a", ChangeSet(cursor=2, log=[entry(7), entry(7)]))
    assert store.seen_events("a", ["e7"]) == set()
    store.commit("b", ChangeSet(cursor=1, log=[entry(1)]))  # per agent
    assert store.seen_events("b", ["e1"]) == {"e1"}


def test_unknown_state_table_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="nope"):
        store.commit(
            "a", ChangeSet(cursor=1, log=[entry(1)], rows={"nope": [StoredRow("k", 1, "{}")]})
        )
    assert store.seen_events("a", ["e1"]) == set()


def test_iter_log_pages_through_long_logs(store: Store) -> None:
    store.commit("a", ChangeSet(cursor=1, log=[entry(i) for i in range(4500)]))
    assert [e.entry_id for e in store.iter_log("a")] == [f"e{i}" for i in range(4500)]
    ids = [f"e{i}" for i in range(0, 9000, 2)]
    assert len(store.seen_events("a", ids)) == 2250


def test_iter_units_pages_through_every_applied_unit(store: Store) -> None:
    results = {
        f"b{i}": MergeResult(agent_id="a", unit_id=f"b{i}", memories_added=i) for i in range(4500)
    }
    store.commit("a", ChangeSet(cursor=1, units=list(results.items())))
    store.commit("other", ChangeSet(cursor=1, units=[("b1", MergeResult(agent_id="other"))]))
    assert dict(store.iter_units("a")) == results
    assert list(store.iter_units("other")) == [("b1", MergeResult(agent_id="other"))]
    assert list(store.iter_units("nobody")) == []
    # A unit recorded again replaces its result.
    store.commit("other", ChangeSet(cursor=1, units=[("b1", MergeResult(agent_id="x"))]))
    assert store.applied_unit("other", "b1") == MergeResult(agent_id="x")


def test_reset_state_keeps_log_units_and_instances(store: Store) -> None:
    store.commit(
        "a",
        ChangeSet(
            cursor=1,
            log=[entry(1)],
            units=[("b1", MergeResult())],
            meta='{"stats": {}}',
            rows={
                "memories": [StoredRow("m1", 1, "{}")],
                "skills": [StoredRow("s1", 1, "{}")],
                "instances": [StoredRow("i1", 0, "{}")],
            },
        ),
    )
    store.reset_state("a")
    loaded = store.load_agent("a")
    assert loaded.cursor == 0 and loaded.meta is None
    assert loaded.rows["memories"] == [] and loaded.rows["skills"] == []
    assert loaded.rows["instances"] == [StoredRow("i1", 0, "{}")]
    assert store.applied_unit("a", "b1") is not None
    assert [e.entry_id for e in store.iter_log("a")] == ["e1"]
    assert store.seen_events("a", ["e1"]) == {"e1"}


def test_tokens(store: Store) -> None:
    rec = TokenRecord("t1", "hash1", "a", "i1", "read", T0)
    store.put_token(rec)
    later = TokenRecord(
        "t0", "hash0", "b", "i2", "write", datetime(2026, 2, 1, tzinfo=timezone.utc)
    )
    store.put_token(later)
    assert store.token_by_hash("hash1") == rec
    assert store.token_by_hash("nope") is None
    assert store.list_tokens() == [rec, later]  # by creation time
    assert store.revoke_token("t1") is True
    assert store.revoke_token("t2") is False
    revoked = store.token_by_hash("hash1")
    assert revoked is not None and revoked.revoked
    assert store.token_by_hash("hash0") == later


def test_a_store_opened_again_reads_what_was_committed(open_stores: StoreFactory) -> None:
    first = open_stores()
    first.commit(
        "a", ChangeSet(cursor=1, log=[entry(1)], rows={"skills": [StoredRow("s1", 1, "{}")]})
    )
    first.put_token(TokenRecord("t1", "hash1", "a", "i1", "write", T0))
    first.close()
    again = open_stores()
    assert again.seen_events("a", ["e1"]) == {"e1"}
    assert again.load_agent("a").rows["skills"] == [StoredRow("s1", 1, "{}")]
    assert again.token_by_hash("hash1") is not None


def test_write_version(store: Store) -> None:
    """Single-writer stores have none; shared ones count commits and refuse stale ones."""
    from experience_sync.errors import StaleStateError

    if store.agent_version("a") is None:
        assert store.name == "sqlite"  # single writer: the engine's memory is the truth
        store.commit("a", ChangeSet(cursor=1, log=[entry(1)], expect_version=41))
        assert store.load_agent("a").version == 0
        return
    assert store.agent_version("a") == 0 and store.load_agent("a").version == 0
    store.commit("a", ChangeSet(cursor=1, log=[entry(1)], expect_version=0))
    store.commit("a", ChangeSet(cursor=1, units=[("b1", MergeResult())], expect_version=1))
    assert store.agent_version("a") == 2 and store.load_agent("a").version == 2
    with pytest.raises(StaleStateError):
        store.commit(
            "a",
            ChangeSet(cursor=2, log=[entry(2)], units=[("b2", MergeResult())], expect_version=1),
        )
    assert store.seen_events("a", ["e2"]) == set() and store.applied_unit("a", "b2") is None
    assert store.agent_version("a") == 2
    store.commit("a", ChangeSet(cursor=2, log=[entry(3)]))  # no expectation: not checked
    assert store.agent_version("a") == 3
    store.reset_state("a")
    assert store.agent_version("a") == 4
    assert store.agent_version("b") == 0


# ---------------------------------------------------------------------- under the engine


def test_engine_failed_commit_leaves_no_trace(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = MergeEngine(store, MergeStrategyConfig())
    engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(1, "Likes tea")]))
    before = engine.state("a")
    real_commit = store.commit

    def fail_once(agent_id: str, changes: ChangeSet) -> None:
        monkeypatch.setattr(store, "commit", real_commit)
        raise OSError("disk full")

    monkeypatch.setattr(store, "commit", fail_once)
    with pytest.raises(OSError):
        engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(2, "Owns a cat")]))
    assert engine.state("a") == before  # reloaded from the store
    r = engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(2, "Owns a cat")]))
    assert r.accepted_event_ids == ["e2"]  # the retry is not a duplicate
    engine.close()


def test_engine_concurrent_ingestion(store: Store) -> None:
    engine = MergeEngine(store, MergeStrategyConfig())
    errors: list[BaseException] = []

    def worker(agent: str, base: int) -> None:
        try:
            for i in range(base, base + 20):
                # every event twice, from two threads, across two agents
                engine.ingest_events(
                    agent,
                    EventsRequest(
                        instance_id="i1", events=[ev(i, f"memory {chr(97 + i % 26)} {i * 'z'}")]
                    ),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(agent, 0)) for agent in ("a", "b") for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for agent in ("a", "b"):
        state = engine.state(agent)
        assert state.stats.total_events == 20
        assert sum(m.access_count for m in state.memories) == 20
        assert len(list(store.iter_log(agent))) == 20
    engine.close()


def test_engine_plugin_failure_mid_merge_leaves_no_trace(
    store: Store, register_plugin: Callable[..., str]
) -> None:
    from experience_sync import hookimpl
    from experience_sync.builtin.similarity import JaccardSimilarity

    class Flaky(JaccardSimilarity):
        fail_on = "explode"

        def match(self, normalized: str, embedding: object = None, text: str | None = None):  # type: ignore[override]
            if self.fail_on in normalized:
                raise RuntimeError("similarity backend down")
            return super().match(normalized, embedding, text)  # type: ignore[arg-type]

    class Plugin:
        @hookimpl
        def experience_sync_register_similarity_methods(self, register: object) -> None:
            register("flaky", lambda config=None: Flaky(config))  # type: ignore[operator]

    register_plugin(Plugin(), name="flaky")
    engine = MergeEngine(store, MergeStrategyConfig(similarity_method="flaky"))
    engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(1, "Likes tea")]))
    before = engine.state("a")
    with pytest.raises(RuntimeError):
        engine.ingest_events(
            "a", EventsRequest(instance_id="i1", events=[ev(2, "Owns a cat"), ev(3, "explode now")])
        )
    assert engine.state("a") == before
    assert store.seen_events("a", ["e2", "e3"]) == set()
    engine.close()


def test_replay_in_place_and_into_the_other_kind_of_store(
    store: Store,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    register_plugin: Callable[..., str],
) -> None:
    engine = MergeEngine(store, MergeStrategyConfig())
    for i in range(12):
        engine.ingest_events(
            "a",
            EventsRequest(
                instance_id=f"i{i % 3}",
                events=[ev(i, f"fact {i % 5} about {'tea' if i % 2 else 'cats'}")],
            ),
        )
    live = engine.state("a")
    units = {"b1": MergeResult(agent_id="a", unit_id="b1")}
    store.commit("a", ChangeSet(cursor=live.cursor, units=list(units.items())))
    assert replay(store, "a", MergeStrategyConfig()) == live
    # Into a store of the other kind: the same state, log and units.
    if store.name == "sqlite":
        import experience_sync_postgres.plugin

        register_plugin(experience_sync_postgres.plugin, name="postgres")
        other = open_store(request.getfixturevalue("postgres_url"))
    else:
        other = open_store(f"sqlite:///{tmp_path}/other.db")
    try:
        assert replay(store, "a", MergeStrategyConfig(), target=other) == live
        assert dict(other.iter_units("a")) == units
        assert [e.entry_id for e in other.iter_log("a")] == [
            e.entry_id for e in store.iter_log("a")
        ]
        assert MergeEngine(other, MergeStrategyConfig()).state("a") == live
    finally:
        other.close()
