"""What a plugin's tests use: the stable testing surface of experience-sync.

- :class:`MockTransport`: a transport that hands each request to a function.
- :func:`run_in_thread` / :class:`HubServer`: a real hub (uvicorn) on a free
  loopback port, with a temporary SQLite store by default.
- :func:`registered_plugin`: a context manager registering a plugin with the
  process-wide plugin manager for the duration of a block, and the
  :func:`register_plugin` pytest fixture built on it. Enable the fixture in a
  test module or the top-level ``conftest.py`` with
  ``pytest_plugins = ["experience_sync.testing"]`` (or import the fixture:
  ``from experience_sync.testing import register_plugin``).
- :class:`StoreContract`: the store contract suite. Subclass it in a test
  module and provide a ``make_store`` (or ``store_url``) fixture; every test
  of the contract then runs on your store::

      class TestMyStore(StoreContract):
          @pytest.fixture
          def make_store(self, tmp_path):
              return lambda: MyStore(tmp_path / "data")

Names here follow the stability promise of :mod:`experience_sync.api`. The
module needs pytest, imported when the module is; without it the import fails
with an :class:`ImportError` saying so.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import pytest
except ImportError as exc:  # pragma: no cover - pytest is in every test environment
    raise ImportError(
        "experience_sync.testing needs pytest: pip install pytest"
    ) from exc

from experience_sync.config import MergeStrategyConfig
from experience_sync.errors import StaleStateError
from experience_sync.forgetting import ForgetRecord, ForgetRequest, redacted_body
from experience_sync.hookspecs import Register, hookimpl
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.forget import forget
from experience_sync.hub.replay import replay
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.interfaces import MockTransport, Store, TokenRecord
from experience_sync.models import EventsRequest, ExperienceEvent, Memory, MergeResult
from experience_sync.plugins import registered_plugin
from experience_sync.recall.documents import SearchDoc, doc_of_memory
from experience_sync.stores.state import ChangeSet, LogEntry, StoredRow

__all__ = [
    "HubServer",
    "MockTransport",
    "StoreContract",
    "StoreFactory",
    "register_plugin",
    "registered_plugin",
    "run_in_thread",
]

#: ``make_store()`` opens the store under test: every call opens the same
#: storage again (another connection, as another hub process would).
StoreFactory = Callable[[], Store]


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., str]]:
    """Register a plugin object for one test: ``register_plugin(obj, name=...)``.

    The plugin joins the process-wide plugin manager and is unregistered when
    the test ends, whatever happens. Returns the name it was registered under.
    """
    stack: list[AbstractContextManager[str]] = []

    def _register(plugin: object, name: str | None = None) -> str:
        cm = registered_plugin(plugin, name=name)
        plugin_name = cm.__enter__()
        stack.append(cm)
        return plugin_name

    yield _register
    while stack:
        stack.pop().__exit__(None, None, None)


# ---------------------------------------------------------------------- the store contract

_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _entry(i: int, request: int = 1, unit: str | None = None) -> LogEntry:
    return LogEntry(f"e{i}", "event", f'{{"x": {i}}}', unit, "i1", request)


def _ev(i: int, content: str) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": f"e{i}",
            "timestamp": _T0,
            "source_instance": "i1",
            "event_type": "memory",
            "data": {"content": content},
        }
    )


class StoreContract:
    """The :class:`~experience_sync.api.Store` contract, as tests to inherit.

    Subclass it in a test module (the class name must start with ``Test``)
    and provide one of two fixtures:

    - ``make_store``: returns a callable that opens the store under test,
      empty at the start of each test; each call opens the same storage
      again (a new connection to it, as another hub process would).
    - ``store_url``: the URL of an empty store, opened through the
      ``experience_sync_register_stores`` registry (your plugin must be
      registered: use :func:`register_plugin` in ``make_store`` or install
      it).

    Optional overrides:

    - the ``integrity_error`` fixture: the exception a commit raises when it
      would log an entry id the agent's log holds already (default any
      :class:`Exception`; name yours to make the check stricter);
    - the ``replay_target`` fixture: another empty store that replay copies
      an agent into (default a built-in SQLite store in ``tmp_path``).

    The tests check the store alone (commits, reads, paging, transactions,
    tokens, write versions) and under the merge engine (failed commits,
    concurrent ingestion, plugin failure mid-merge, replay).
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def store_url(self) -> str:
        """The URL of an empty store; override this or ``make_store``."""
        pytest.fail(
            f"{type(self).__name__} must override the make_store or store_url fixture"
        )

    @pytest.fixture
    def make_store(self, request: pytest.FixtureRequest) -> StoreFactory:
        """Opens the store under test; by default ``open_store(store_url)``."""
        url: str = request.getfixturevalue("store_url")
        return lambda: open_store(url)

    @pytest.fixture
    def open_stores(self, make_store: StoreFactory) -> Iterator[StoreFactory]:
        """``open_stores()`` opens the store again, and closes every one at the end."""
        opened: list[Store] = []

        def _open() -> Store:
            s = make_store()
            opened.append(s)
            return s

        yield _open
        for s in opened:
            s.close()

    @pytest.fixture
    def store(self, open_stores: StoreFactory) -> Store:
        """The store under test, empty."""
        return open_stores()

    @pytest.fixture
    def integrity_error(self, store: Store) -> type[Exception]:
        """What the store raises for a log entry id it already holds."""
        return Exception

    @pytest.fixture
    def replay_target(self, tmp_path: Path) -> Iterator[Store]:
        """An empty store that replay copies into: a built-in SQLite store."""
        other = open_store(f"sqlite:///{tmp_path}/replay-target.db")
        yield other
        other.close()

    # ------------------------------------------------------------------ the store alone

    def test_commit_log_rows_units_and_reads(self, store: Store) -> None:
        """A commit's log, rows, meta and units read back; unknown ids read as empty."""
        result = MergeResult(agent_id="a", unit_id="b1", memories_added=2)
        store.commit(
            "a",
            ChangeSet(
                cursor=1,
                log=[_entry(1, unit="b1"), _entry(2, unit="b1")],
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
                cursor=2,
                log=[_entry(3, request=2)],
                rows={"skills": [StoredRow("s1", 2, '{"s": 2}')]},
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

    def test_meta_is_kept_when_a_commit_brings_none(self, store: Store) -> None:
        """A commit without statistics keeps the previous ones."""
        store.commit("a", ChangeSet(cursor=1, log=[_entry(1)], meta='{"stats": {"n": 1}}'))
        store.commit("a", ChangeSet(cursor=1, rows={"instances": [StoredRow("i1", 0, "{}")]}))
        assert store.load_agent("a").meta == '{"stats": {"n": 1}}'

    def test_rows_load_in_the_order_they_were_first_written(self, store: Store) -> None:
        """Rows load in first-write order; rewriting a row keeps its place."""
        keys = ["m9", "m1", "m5", "m3"]
        store.commit(
            "a", ChangeSet(cursor=1, rows={"memories": [StoredRow(k, 1, "{}") for k in keys]})
        )
        store.commit("a", ChangeSet(cursor=2, rows={"memories": [StoredRow("m1", 2, '{"v": 2}')]}))
        assert [r.key for r in store.load_agent("a").rows["memories"]] == keys
        assert store.load_agent("a").rows["memories"][1].body == '{"v": 2}'

    def test_log_order_is_per_agent_arrival_order(self, store: Store) -> None:
        """Each agent's log reads back in arrival order; ``agents()`` is sorted."""
        for r in range(1, 6):
            store.commit("a", ChangeSet(cursor=r, log=[_entry(r * 10 + i, r) for i in range(3)]))
            store.commit("b", ChangeSet(cursor=r, log=[_entry(r * 10 + i, r) for i in range(2)]))
        assert [e.entry_id for e in store.iter_log("a")] == [
            f"e{r * 10 + i}" for r in range(1, 6) for i in range(3)
        ]
        assert len(list(store.iter_log("b"))) == 10
        assert store.agents() == ["a", "b"]

    def test_commit_is_one_transaction(
        self, store: Store, integrity_error: type[Exception]
    ) -> None:
        """A commit that logs a held entry id (or one id twice) leaves nothing behind."""
        store.commit("a", ChangeSet(cursor=1, log=[_entry(1)]))
        with pytest.raises(integrity_error):  # e1 again: the log holds each id once per agent
            store.commit(
                "a",
                ChangeSet(
                    cursor=2,
                    log=[_entry(2), _entry(1)],
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
            store.commit("a", ChangeSet(cursor=2, log=[_entry(7), _entry(7)]))
        assert store.seen_events("a", ["e7"]) == set()
        store.commit("b", ChangeSet(cursor=1, log=[_entry(1)]))  # per agent
        assert store.seen_events("b", ["e1"]) == {"e1"}

    def test_unknown_state_table_is_refused(self, store: Store) -> None:
        """A row for a table outside ``TABLES`` is a ``ValueError`` naming it; nothing is written."""
        with pytest.raises(ValueError, match="nope"):
            store.commit(
                "a",
                ChangeSet(cursor=1, log=[_entry(1)], rows={"nope": [StoredRow("k", 1, "{}")]}),
            )
        assert store.seen_events("a", ["e1"]) == set()

    def test_memory_rows_keep_their_parse(self, store: Store) -> None:
        """With ``keeps_parsed``: a row's parse loads with it, save_parsed fills it, a commit without one keeps it."""
        rows = [
            StoredRow("m1", 1, "{}", "h1", None, "likes tea", b"p1"),
            StoredRow("m2", 1, "{}", "h2", None, "likes cats"),
        ]
        store.commit("a", ChangeSet(cursor=1, log=[_entry(1)], rows={"memories": rows}))
        loaded = store.load_agent("a").rows["memories"]
        if not store.keeps_parsed:
            # Not kept: a row loads without its parse (or with the committed
            # one), and the engine never asks the store to save any.
            assert [dataclasses.replace(r, parsed=None) for r in loaded] == [
                dataclasses.replace(r, parsed=None) for r in rows
            ]
            assert loaded[0].parsed in (None, b"p1") and loaded[1].parsed is None
            return
        assert loaded == rows
        version = store.agent_version("a")
        # A cache: only the named rows of that agent change, no version moves.
        store.save_parsed("a", {"m2": b"p2", "gone": b"p3"})
        store.save_parsed("b", {"m1": b"another agent's"})
        store.save_parsed("a", {})
        assert store.agent_version("a") == version
        assert store.load_agent("a").rows["memories"] == [
            StoredRow("m1", 1, "{}", "h1", None, "likes tea", b"p1"),
            StoredRow("m2", 1, "{}", "h2", None, "likes cats", b"p2"),
        ]
        assert store.load_agent("b").rows["memories"] == []
        # A later commit: without a parse (the text did not change) the stored
        # one stays; with one (a new text) it replaces it.
        store.commit(
            "a",
            ChangeSet(
                cursor=2,
                rows={
                    "memories": [
                        StoredRow("m1", 2, '{"v": 2}', "h1", None, "likes tea"),
                        StoredRow("m2", 2, '{"v": 2}', "h3", None, "likes dogs", b"p4"),
                    ]
                },
            ),
        )
        assert store.load_agent("a").rows["memories"] == [
            StoredRow("m1", 2, '{"v": 2}', "h1", None, "likes tea", b"p1"),
            StoredRow("m2", 2, '{"v": 2}', "h3", None, "likes dogs", b"p4"),
        ]

    def test_iter_log_pages_through_long_logs(self, store: Store) -> None:
        """Long logs read back whole; ``seen_events`` takes thousands of ids."""
        store.commit("a", ChangeSet(cursor=1, log=[_entry(i) for i in range(4500)]))
        assert [e.entry_id for e in store.iter_log("a")] == [f"e{i}" for i in range(4500)]
        ids = [f"e{i}" for i in range(0, 9000, 2)]
        assert len(store.seen_events("a", ids)) == 2250

    def test_iter_units_pages_through_every_applied_unit(self, store: Store) -> None:
        """Every applied unit reads back, per agent; a unit recorded again is replaced."""
        results = {
            f"b{i}": MergeResult(agent_id="a", unit_id=f"b{i}", memories_added=i)
            for i in range(4500)
        }
        store.commit("a", ChangeSet(cursor=1, units=list(results.items())))
        store.commit("other", ChangeSet(cursor=1, units=[("b1", MergeResult(agent_id="other"))]))
        assert dict(store.iter_units("a")) == results
        assert list(store.iter_units("other")) == [("b1", MergeResult(agent_id="other"))]
        assert list(store.iter_units("nobody")) == []
        store.commit("other", ChangeSet(cursor=1, units=[("b1", MergeResult(agent_id="x"))]))
        assert store.applied_unit("other", "b1") == MergeResult(agent_id="x")

    def test_reset_state_keeps_log_units_and_instances(self, store: Store) -> None:
        """``reset_state`` drops the state, not the log, units or instance rows."""
        store.commit(
            "a",
            ChangeSet(
                cursor=1,
                log=[_entry(1)],
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

    def test_tokens(self, store: Store) -> None:
        """Tokens are found by hash, listed by creation time and revoked by id."""
        rec = TokenRecord("t1", "hash1", "a", "i1", "read", _T0)
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

    def test_a_store_opened_again_reads_what_was_committed(
        self, open_stores: StoreFactory
    ) -> None:
        """What one handle committed and closed, another handle reads."""
        first = open_stores()
        first.commit(
            "a", ChangeSet(cursor=1, log=[_entry(1)], rows={"skills": [StoredRow("s1", 1, "{}")]})
        )
        first.put_token(TokenRecord("t1", "hash1", "a", "i1", "write", _T0))
        first.close()
        again = open_stores()
        assert again.seen_events("a", ["e1"]) == {"e1"}
        assert again.load_agent("a").rows["skills"] == [StoredRow("s1", 1, "{}")]
        assert again.token_by_hash("hash1") is not None

    def test_write_version(self, store: Store) -> None:
        """Single-writer stores have none; shared ones count commits and refuse stale ones."""
        if store.agent_version("a") is None:
            # One writer: the engine's memory is the truth, expectations are ignored.
            store.commit("a", ChangeSet(cursor=1, log=[_entry(1)], expect_version=41))
            assert store.load_agent("a").version == 0
            assert store.seen_events("a", ["e1"]) == {"e1"}
            return
        assert store.agent_version("a") == 0 and store.load_agent("a").version == 0
        store.commit("a", ChangeSet(cursor=1, log=[_entry(1)], expect_version=0))
        store.commit("a", ChangeSet(cursor=1, units=[("b1", MergeResult())], expect_version=1))
        assert store.agent_version("a") == 2 and store.load_agent("a").version == 2
        with pytest.raises(StaleStateError):
            store.commit(
                "a",
                ChangeSet(
                    cursor=2, log=[_entry(2)], units=[("b2", MergeResult())], expect_version=1
                ),
            )
        assert store.seen_events("a", ["e2"]) == set() and store.applied_unit("a", "b2") is None
        assert store.agent_version("a") == 2
        store.commit("a", ChangeSet(cursor=2, log=[_entry(3)]))  # no expectation: not checked
        assert store.agent_version("a") == 3
        store.reset_state("a")
        assert store.agent_version("a") == 4
        assert store.agent_version("b") == 0

    # ------------------------------------------------------------------ under the engine

    def test_engine_failed_commit_leaves_no_trace(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A commit that fails leaves the engine's state as the store has it; a retry merges."""
        engine = MergeEngine(store, MergeStrategyConfig())
        engine.ingest_events("a", EventsRequest(instance_id="i1", events=[_ev(1, "Likes tea")]))
        before = engine.state("a")
        real_commit = store.commit

        def fail_once(agent_id: str, changes: ChangeSet) -> None:
            monkeypatch.setattr(store, "commit", real_commit)
            raise OSError("disk full")

        monkeypatch.setattr(store, "commit", fail_once)
        with pytest.raises(OSError):
            engine.ingest_events(
                "a", EventsRequest(instance_id="i1", events=[_ev(2, "Owns a cat")])
            )
        assert engine.state("a") == before  # reloaded from the store
        r = engine.ingest_events("a", EventsRequest(instance_id="i1", events=[_ev(2, "Owns a cat")]))
        assert r.accepted_event_ids == ["e2"]  # the retry is not a duplicate
        engine.close()

    def test_engine_concurrent_ingestion(self, store: Store) -> None:
        """Two threads per agent, two agents, every event twice: each is merged once."""
        engine = MergeEngine(store, MergeStrategyConfig())
        errors: list[BaseException] = []

        def worker(agent: str, base: int) -> None:
            try:
                for i in range(base, base + 20):
                    engine.ingest_events(
                        agent,
                        EventsRequest(
                            instance_id="i1",
                            events=[_ev(i, f"memory {chr(97 + i % 26)} {i * 'z'}")],
                        ),
                    )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, args=(agent, 0))
            for agent in ("a", "b")
            for _ in range(2)
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

    def test_engine_plugin_failure_mid_merge_leaves_no_trace(self, store: Store) -> None:
        """A similarity plugin raising mid-merge leaves neither state nor log behind."""
        from experience_sync.hub.merge.similarity import JaccardSimilarity

        class Flaky(JaccardSimilarity):
            fail_on = "explode"

            def match(self, normalized: str, embedding: object = None, text: str | None = None):  # type: ignore[no-untyped-def]
                if self.fail_on in normalized:
                    raise RuntimeError("similarity backend down")
                return super().match(normalized, embedding, text)  # type: ignore[arg-type]

        class Plugin:
            @hookimpl
            def experience_sync_register_similarity_methods(self, register: Register) -> None:
                register("flaky", lambda config=None: Flaky(config))

        with registered_plugin(Plugin(), name="flaky-similarity"):
            engine = MergeEngine(store, MergeStrategyConfig(similarity_method="flaky"))
            engine.ingest_events(
                "a", EventsRequest(instance_id="i1", events=[_ev(1, "Likes tea")])
            )
            before = engine.state("a")
            with pytest.raises(RuntimeError):
                engine.ingest_events(
                    "a",
                    EventsRequest(
                        instance_id="i1", events=[_ev(2, "Owns a cat"), _ev(3, "explode now")]
                    ),
                )
            assert engine.state("a") == before
            assert store.seen_events("a", ["e2", "e3"]) == set()
            engine.close()

    def test_engine_load_stores_the_parses_it_made(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Rows without parses load as those with them do; a store that keeps them gets them."""
        import experience_sync.hub.merge.memory as memory_module
        from experience_sync.hub.merge.similarity import load_parsed

        engine = MergeEngine(store, MergeStrategyConfig())
        texts = [
            f"Fact {i}: Alice keeps {i % 7} cats in {'Paris' if i % 2 else 'Oslo'}"
            for i in range(23)
        ]
        for start in range(0, len(texts), 5):
            events = [_ev(start + i, t) for i, t in enumerate(texts[start : start + 5])]
            engine.ingest_events("a", EventsRequest(instance_id="i1", events=events))
        rows = store.load_agent("a").rows["memories"]
        # The same rows for agent "b", without their parses.
        store.commit(
            "b",
            ChangeSet(
                cursor=1,
                rows={"memories": [dataclasses.replace(r, parsed=None) for r in rows]},
            ),
        )
        # Small chunks and batches: the load reads and saves in several.
        monkeypatch.setattr(memory_module, "LOAD_CHUNK", 4)
        monkeypatch.setattr(memory_module, "SAVE_PARSED_BATCH", 3)
        saved: list[int] = []
        save = store.save_parsed

        def counting(agent_id: str, parsed: Any) -> None:
            saved.append(len(parsed))
            save(agent_id, parsed)

        monkeypatch.setattr(store, "save_parsed", counting)
        fresh = MergeEngine(store, MergeStrategyConfig())
        fresh.preload(["a", "b"])
        a, b = fresh._runtimes["a"].memory, fresh._runtimes["b"].memory
        assert list(b.memories) == list(a.memories) == [r.key for r in rows]
        assert b.memories == a.memories
        reloaded = store.load_agent("b").rows["memories"]
        if not store.keeps_parsed:
            assert saved == []
            return
        assert sum(saved) == len(rows) and max(saved) < 3 + 4  # a batch, and a chunk
        for row in reloaded:
            assert row.parsed is not None
            assert load_parsed(row.parsed, Memory.model_validate_json(row.body).content)
        # Loaded again, every parse is read back: none is saved.
        saved.clear()
        MergeEngine(store, MergeStrategyConfig()).preload(["b"])
        assert saved == []

    def test_reads_in_place(self, store: Store) -> None:
        """With ``reads_in_place``: the cursor, rows by key and pages in load order, of one agent."""
        if not store.reads_in_place:
            pytest.skip(f"store {store.name!r} does not read in place (optional)")
        keys = ["m9", "m1", "m5", "m3", "m7"]
        store.commit(
            "a", ChangeSet(cursor=1, rows={"memories": [StoredRow(k, 1, "{}") for k in keys]})
        )
        store.commit(
            "a",
            ChangeSet(
                cursor=2,
                rows={"memories": [StoredRow("m1", 2, '{"v": 2}')],
                      "skills": [StoredRow("s1", 2, '{"s": 1}')]},
            ),
        )
        store.commit("b", ChangeSet(cursor=4, rows={"memories": [StoredRow("m1", 4, '{"b": 1}')]}))
        assert store.agent_cursor("a") == 2 and store.agent_cursor("b") == 4
        assert store.agent_cursor("nobody") == 0
        found = sorted(store.read_rows("a", "memories", ["m3", "m1", "gone", "m1"]), key=repr)
        assert [(r.key, r.version, r.body) for r in found] == [
            ("m1", 2, '{"v": 2}'), ("m3", 1, "{}")
        ]
        assert store.read_rows("a", "memories", []) == []
        assert [r.key for r in store.read_rows("a", "skills", ["s1"])] == ["s1"]
        whole = store.load_agent("a").rows["memories"]
        rows, total = store.page_rows("a", "memories", 0, 100)
        assert total == 5 and [(r.key, r.body) for r in rows] == [(r.key, r.body) for r in whole]
        rows, total = store.page_rows("a", "memories", 1, 2)
        assert total == 5 and [r.key for r in rows] == ["m1", "m5"]
        assert store.page_rows("a", "memories", 5, 10) == ([], 5)
        assert store.page_rows("nobody", "skills", 0, 10) == ([], 0)
        with pytest.raises(ValueError, match="nope"):
            store.read_rows("a", "nope", ["k"])
        with pytest.raises(ValueError, match="nope"):
            store.page_rows("a", "nope", 0, 1)

    def test_engine_reads_in_place_equal_the_loaded_agent(self, store: Store) -> None:
        """With ``reads_in_place``: an agent not loaded reads as it does loaded, and stays unloaded."""
        from experience_sync.recall.models import SearchQuery

        if not store.reads_in_place:
            pytest.skip(f"store {store.name!r} does not read in place (optional)")
        engine = MergeEngine(store, MergeStrategyConfig())
        syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo"]
        words = [a + b + c for a in syllables for b in syllables for c in syllables[:2]]
        texts = [f"Note {words[i]} {words[i + 40]} about {words[i + 80]} cats of Paris"
                 for i in range(30)]
        # A duplicate and a contradiction.
        texts += [texts[3].upper(), texts[4].replace(" Paris ", " Oslo ")]
        events = [_ev(i, t) for i, t in enumerate(texts)]
        for i in range(6):
            events.append(ExperienceEvent.model_validate({
                "event_id": f"s{i}", "timestamp": _T0, "source_instance": f"i{i % 3}",
                "event_type": "skill",
                "data": {"name": f"skill {i % 2}", "usage": {"invocations": i + 1,
                                                             "successes": i}},
            }))
            events.append(ExperienceEvent.model_validate({
                "event_id": f"k{i}", "timestamp": _T0, "source_instance": f"i{i}",
                "event_type": "knowledge",
                "data": {"subject": f"office {i % 2}" if i < 5 else "cats",
                         "content": f"The office {i % 2} is in Lyon" if i < 5 else "Cats sleep",
                         "confidence": 0.9},
            }))
        for start in range(0, len(events), 7):
            engine.ingest_events("a", EventsRequest(instance_id="i1",
                                                    events=events[start : start + 7]))
        queries = [
            SearchQuery(q="Alice cats Paris", k=10),
            SearchQuery(q="office Lyon", k=5, kinds=["knowledge"], knowledge_status="all"),
            SearchQuery(q="office", kinds=["knowledge"], knowledge_status="pending"),
            SearchQuery(q="skill", k=3, kinds=["skill", "memory"]),
            SearchQuery(q="nothing matches zyzzyva"),
        ]

        def reads(e: MergeEngine) -> list[Any]:
            out: list[Any] = [e.memories("a", None, offset, limit) for offset, limit in
                              [(0, 50), (5, 7), (31, 10), (40, 5)]]
            out += [e.skills("a"), e.knowledge("a"), e.knowledge("a", "pending"),
                    e.knowledge("a", "integrated"), e.memories("b")]
            out += [e.search("a", q).model_dump() for q in queries]
            return out

        in_place = MergeEngine(store, MergeStrategyConfig())
        got = reads(in_place)
        assert in_place.loaded_agents() == []  # answered by the store
        loaded = MergeEngine(store, MergeStrategyConfig())
        loaded.preload(["a"])
        assert loaded.loaded_agents() == ["a"]
        assert got == reads(loaded)
        assert got[0][1] == 30 and got[4] and got[5] and got[9]["hits"]

    def test_replay_in_place_and_into_another_store(
        self, store: Store, replay_target: Store
    ) -> None:
        """Replay rebuilds the live state in place, and copies state, log and units."""
        engine = MergeEngine(store, MergeStrategyConfig())
        for i in range(12):
            engine.ingest_events(
                "a",
                EventsRequest(
                    instance_id=f"i{i % 3}",
                    events=[_ev(i, f"fact {i % 5} about {'tea' if i % 2 else 'cats'}")],
                ),
            )
        live = engine.state("a")
        units = {"b1": MergeResult(agent_id="a", unit_id="b1")}
        store.commit("a", ChangeSet(cursor=live.cursor, units=list(units.items())))
        assert replay(store, "a", MergeStrategyConfig()) == live
        assert replay(store, "a", MergeStrategyConfig(), target=replay_target) == live
        assert dict(replay_target.iter_units("a")) == units
        assert [e.entry_id for e in replay_target.iter_log("a")] == [
            e.entry_id for e in store.iter_log("a")
        ]
        assert MergeEngine(replay_target, MergeStrategyConfig()).state("a") == live

    # ------------------------------------------------------------------ forgetting

    @staticmethod
    def _can_forget(store: Store) -> None:
        if type(store).forget is Store.forget:
            pytest.skip(f"store {store.name!r} does not implement forget (optional)")

    def test_forget_rewrites_entries_in_place_and_replaces_the_state(self, store: Store) -> None:
        """``forget`` redacts entries (ids kept), replaces state and documents, records the audit."""
        self._can_forget(store)

        def doc(key: str, text: str, cursor: int) -> SearchDoc:
            at = datetime(2026, 1, 1, tzinfo=timezone.utc)
            return doc_of_memory(Memory(memory_id=key, content=text, normalized_hash=key,
                                        created_at=at, updated_at=at, version=cursor))

        store.commit("a", ChangeSet(
            cursor=1, log=[_entry(1), _entry(2)], units=[("b1", MergeResult())],
            rows={"memories": [StoredRow("m1", 1, '{"secret": 1}'), StoredRow("m2", 1, "{}")],
                  "instances": [StoredRow("i1", 0, "{}")]},
            documents=[doc("m1", "quarkwright lives here", 1), doc("m2", "tea is hot", 1)],
        ))
        tombstone = LogEntry("forget:f1", "forget", '{"forget_id": "f1"}', None, "hub", 2)
        record = ForgetRecord(forget_id="f1", agent_id="a", selectors={"query": 1},
                              events_forgotten=1)
        store.forget("a", ["e1"], "f1", ChangeSet(
            cursor=2, log=[tombstone], meta='{"stats": {}}',
            rows={"memories": [StoredRow("m2", 1, "{}")]},
            documents=[doc("m2", "tea is hot", 1)],
            expect_version=store.agent_version("a"),
        ), record, {"e2": '{"rewritten": 2}'})
        log = list(store.iter_log("a"))
        assert [(e.entry_id, e.kind) for e in log] == [
            ("e1", "forgotten"), ("e2", "event"), ("forget:f1", "forget")
        ]
        assert log[0].body == redacted_body("f1") and log[0].request == 1
        assert log[1].body == '{"rewritten": 2}' and log[1].request == 1
        assert store.seen_events("a", ["e1", "e2", "forget:f1"]) == {"e1", "e2", "forget:f1"}
        loaded = store.load_agent("a")
        assert loaded.cursor == 2
        assert [r.key for r in loaded.rows["memories"]] == ["m2"]
        assert loaded.rows["instances"] == [StoredRow("i1", 0, "{}")]
        assert store.applied_unit("a", "b1") is not None
        if store.text_index:
            assert store.search_text("a", "quarkwright", ["memory"], "all", 5) == []
            assert [k for k, _ in store.search_text("a", "tea", ["memory"], "all", 5)] == [
                ("memory", "m2")
            ]
            assert store.search_cursor("a") == 2
        assert store.forget_records("a") == [record]
        assert store.forget_records("b") == []
        assert store.forget_records() == [record]

    def test_engine_forget_then_replay_equals_the_live_state(
        self, store: Store, replay_target: Store
    ) -> None:
        """After a forget, a resend is a duplicate and replay (in place or copied) gives the live state."""
        self._can_forget(store)
        engine = MergeEngine(store, MergeStrategyConfig())
        words = ["tea", "cats", "rain", "maps", "jazz", "kites", "chess", "bread", "ferns"]
        events = [_ev(i, f"{words[i]} {'Quarkwright said' if i % 3 == 0 else 'is'} {i}")
                  for i in range(9)]
        for i in range(0, 9, 3):
            engine.ingest_events("a", EventsRequest(instance_id="i1", events=events[i : i + 3]))
        result = forget(engine, "a", ForgetRequest(query="quarkwright"))
        assert result.events_forgotten == 3 and result.removed["memories"] >= 1
        live = engine.state("a")
        assert "quarkwright" not in live.model_dump_json().lower()
        again = engine.ingest_events("a", EventsRequest(instance_id="i1", events=events[:1]))
        assert again.duplicate_event_ids == ["e0"]
        assert engine.state("a") == live
        assert engine.state("a", since=1).reset
        assert replay(store, "a", MergeStrategyConfig()) == live
        assert replay(store, "a", MergeStrategyConfig(), target=replay_target) == live
        assert MergeEngine(replay_target, MergeStrategyConfig()).state("a") == live
