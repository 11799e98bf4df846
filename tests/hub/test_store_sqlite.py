"""The built-in SQLite store, directly and under the engine."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from experience_sync.builtin.store_sqlite import SQLiteStore, path_from_url
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.state import ChangeSet, LogEntry, StoredRow
from experience_sync.interfaces import TokenRecord
from experience_sync.models import EventsRequest, ExperienceEvent, MergeResult
from experience_sync.plugins import get_plugin_manager

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def entry(i: int, request: int = 1, unit: str | None = None) -> LogEntry:
    return LogEntry(f"e{i}", "event", f'{{"x": {i}}}', unit, "i1", request)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(f"sqlite:///{tmp_path}/hub.db")
    yield s
    s.close()


def test_registered_by_scheme(tmp_path: Path) -> None:
    assert "sqlite" in get_plugin_manager().registry.names("stores")
    s = open_store(f"sqlite:///{tmp_path}/a/b/hub.db")
    assert isinstance(s, SQLiteStore)
    assert (tmp_path / "a" / "b" / "hub.db").exists()
    s.close()


def test_url_convention() -> None:
    assert path_from_url("sqlite:///hub.db") == "hub.db"
    assert path_from_url("sqlite:////var/lib/hub.db") == "/var/lib/hub.db"
    assert path_from_url("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ValueError):
        path_from_url("postgres://x")
    with pytest.raises(ValueError):
        path_from_url("sqlite:///")


def test_wal_mode(store: SQLiteStore, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "hub.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_commit_log_rows_units_and_reads(store: SQLiteStore) -> None:
    result = MergeResult(agent_id="a", unit_id="b1", memories_added=2)
    store.commit("a", ChangeSet(
        cursor=1,
        log=[entry(1, unit="b1"), entry(2, unit="b1")],
        rows={"memories": [StoredRow("m1", 1, "{}", "h1", b"\x00\x00\x80?")],
              "skills": [StoredRow("s1", 1, '{"s": 1}')]},
        meta='{"stats": {}}',
        units=[("b1", result)],
    ))
    store.commit("a", ChangeSet(cursor=2, log=[entry(3, request=2)],
                                rows={"skills": [StoredRow("s1", 2, '{"s": 2}')]}))
    assert store.seen_events("a", ["e1", "e3", "e9"]) == {"e1", "e3"}
    assert store.seen_events("b", ["e1"]) == set()
    assert store.applied_unit("a", "b1") == result
    assert store.applied_unit("a", "b2") is None
    loaded = store.load_agent("a")
    assert loaded.cursor == 2 and loaded.meta == '{"stats": {}}'
    assert loaded.rows["skills"] == [StoredRow("s1", 2, '{"s": 2}')]
    (mem,) = loaded.rows["memories"]
    assert (mem.content_hash, mem.embedding) == ("h1", b"\x00\x00\x80?")
    assert [e.entry_id for e in store.iter_log("a")] == ["e1", "e2", "e3"]
    assert [e.request for e in store.iter_log("a")] == [1, 1, 2]
    assert store.agents() == ["a"]
    assert store.load_agent("nobody").cursor == 0


def test_commit_is_one_transaction(store: SQLiteStore) -> None:
    store.commit("a", ChangeSet(cursor=1, log=[entry(1)]))
    with pytest.raises(sqlite3.IntegrityError):  # e1 again violates the log's unique index
        store.commit("a", ChangeSet(cursor=2, log=[entry(2), entry(1)],
                                    rows={"skills": [StoredRow("s1", 2, "{}")]}))
    assert [e.entry_id for e in store.iter_log("a")] == ["e1"]
    assert store.load_agent("a").rows["skills"] == []
    assert store.load_agent("a").cursor == 1


def test_iter_log_pages_through_long_logs(store: SQLiteStore) -> None:
    store.commit("a", ChangeSet(cursor=1, log=[entry(i) for i in range(4500)]))
    assert sum(1 for _ in store.iter_log("a")) == 4500
    ids = [f"e{i}" for i in range(0, 9000, 2)]
    assert len(store.seen_events("a", ids)) == 2250


def test_iter_units_pages_through_every_applied_unit(store: SQLiteStore) -> None:
    results = {f"b{i}": MergeResult(agent_id="a", unit_id=f"b{i}", memories_added=i) for i in range(4500)}
    store.commit("a", ChangeSet(cursor=1, units=list(results.items())))
    store.commit("other", ChangeSet(cursor=1, units=[("b1", MergeResult(agent_id="other"))]))
    assert dict(store.iter_units("a")) == results
    assert list(store.iter_units("other")) == [("b1", MergeResult(agent_id="other"))]
    assert list(store.iter_units("nobody")) == []


def test_reset_state_keeps_log_units_and_instances(store: SQLiteStore) -> None:
    store.commit("a", ChangeSet(
        cursor=1, log=[entry(1)], units=[("b1", MergeResult())],
        rows={"memories": [StoredRow("m1", 1, "{}")], "instances": [StoredRow("i1", 0, "{}")]},
    ))
    store.reset_state("a")
    loaded = store.load_agent("a")
    assert loaded.cursor == 0 and loaded.rows["memories"] == []
    assert loaded.rows["instances"] == [StoredRow("i1", 0, "{}")]
    assert store.applied_unit("a", "b1") is not None
    assert [e.entry_id for e in store.iter_log("a")] == ["e1"]


def test_tokens(store: SQLiteStore) -> None:
    rec = TokenRecord("t1", "hash1", "a", "i1", "read", T0)
    store.put_token(rec)
    assert store.token_by_hash("hash1") == rec
    assert store.token_by_hash("nope") is None
    assert store.list_tokens() == [rec]
    assert store.revoke_token("t1") is True
    assert store.revoke_token("t2") is False
    revoked = store.token_by_hash("hash1")
    assert revoked is not None and revoked.revoked


class FailingStore(SQLiteStore):
    fail = False

    def commit(self, agent_id: str, changes: ChangeSet) -> None:
        if self.fail:
            self.fail = False
            raise OSError("disk full")
        super().commit(agent_id, changes)


def ev(i: int, content: str) -> ExperienceEvent:
    return ExperienceEvent.model_validate({
        "event_id": f"e{i}", "timestamp": T0, "source_instance": "i1",
        "event_type": "memory", "data": {"content": content},
    })


def test_engine_failed_commit_leaves_no_trace(tmp_path: Path) -> None:
    store = FailingStore(f"sqlite:///{tmp_path}/hub.db")
    engine = MergeEngine(store, MergeStrategyConfig())
    engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(1, "Likes tea")]))
    before = engine.state("a")
    store.fail = True
    with pytest.raises(OSError):
        engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(2, "Owns a cat")]))
    assert engine.state("a") == before  # reloaded from the store
    r = engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(2, "Owns a cat")]))
    assert r.accepted_event_ids == ["e2"]  # the retry is not a duplicate
    engine.close()


def test_engine_concurrent_ingestion(tmp_path: Path) -> None:
    engine = MergeEngine(open_store(f"sqlite:///{tmp_path}/hub.db"), MergeStrategyConfig())
    errors: list[BaseException] = []

    def worker(agent: str, base: int) -> None:
        try:
            for i in range(base, base + 20):
                # every event twice, from two threads, across two agents
                engine.ingest_events(agent, EventsRequest(
                    instance_id="i1", events=[ev(i, f"memory {chr(97 + i % 26)} {i * 'z'}")]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(agent, 0))
               for agent in ("a", "b") for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for agent in ("a", "b"):
        state = engine.state(agent)
        assert state.stats.total_events == 20
        assert sum(m.access_count for m in state.memories) == 20
    engine.close()


def test_store_created_before_the_normalized_column_opens(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute(
        "CREATE TABLE memories (agent_id TEXT NOT NULL, key TEXT NOT NULL, version INTEGER "
        "NOT NULL, content_hash TEXT, embedding BLOB, body TEXT NOT NULL, "
        "PRIMARY KEY (agent_id, key))"
    )
    db.execute("INSERT INTO memories VALUES ('a', 'm1', 1, 'h', NULL, '{}')")
    db.commit()
    db.close()
    s = SQLiteStore(f"sqlite:///{tmp_path}/old.db")
    (row,) = s.load_agent("a").rows["memories"]
    assert row.key == "m1" and row.normalized is None
    s.close()


def test_engine_plugin_failure_mid_merge_leaves_no_trace(
    tmp_path: Path, register_plugin: object
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

    register_plugin(Plugin(), name="flaky")  # type: ignore[operator]
    engine = MergeEngine(open_store(f"sqlite:///{tmp_path}/hub.db"),
                         MergeStrategyConfig(similarity_method="flaky"))
    engine.ingest_events("a", EventsRequest(instance_id="i1", events=[ev(1, "Likes tea")]))
    before = engine.state("a")
    with pytest.raises(RuntimeError):
        engine.ingest_events("a", EventsRequest(
            instance_id="i1", events=[ev(2, "Owns a cat"), ev(3, "explode now")]))
    assert engine.state("a") == before
    engine.close()


def test_seen_ids_survive_folding_and_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    s = SQLiteStore(url)
    # Enough ids that the in-memory set is folded into its sorted arrays
    # several times, in commits of one request each.
    for r in range(12):
        s.commit("a", ChangeSet(cursor=r + 1, log=[entry(r * 1000 + i, r + 1) for i in range(1000)]))
    probe = [f"e{i}" for i in range(0, 24000, 7)]
    expected = {p for p in probe if int(p[1:]) < 12000}
    assert s.seen_events("a", probe) == expected
    assert s.seen_events("b", probe) == set()  # per agent
    s.close()
    reopened = SQLiteStore(url)  # read back from the log
    assert reopened.seen_events("a", probe) == expected
    with pytest.raises(sqlite3.IntegrityError, match="e5"):
        reopened.commit("a", ChangeSet(cursor=13, log=[entry(5)]))
    with pytest.raises(sqlite3.IntegrityError, match="e99999"):  # twice in one commit
        reopened.commit("a", ChangeSet(cursor=13, log=[entry(99999), entry(99999)]))
    assert reopened.seen_events("a", ["e99999"]) == set()
    reopened.close()


def test_seen_ids_check_both_halves_of_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from experience_sync.builtin import store_sqlite

    # Two ids whose digests share their first half: only the second tells them apart.
    fake = {"x": b"\x01" * 8 + b"\x02" * 8, "y": b"\x01" * 8 + b"\x03" * 8, "z": b"\x00" * 16}
    monkeypatch.setattr(store_sqlite, "_digest", fake.__getitem__)
    seen = store_sqlite.SeenIds(["x", "z"])
    assert len(seen) == 2
    assert seen.seen(["x", "y", "z"]) == {"x", "z"}
    seen.update(["y"])
    assert seen.seen(["y"]) == {"y"}
