"""Search over each first-party store's own text index: ``sqlite`` (FTS5) and ``postgresql``.

Both stores keep a text index written in their commit transaction
(``text_index = True``). The merge engine's search over each must find the
same things for the same events, never a superseded statement, pending
knowledge only when asked, the same answers after a restart without
reindexing, and an index rebuilt when the store predates search. On
PostgreSQL, several hubs share one database, so the index must stay right
when they commit and reindex concurrently.
"""

from __future__ import annotations

import random
import sqlite3
import string
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from experience_sync.config import MergeStrategyConfig, RecallConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.interfaces import Store
from experience_sync.models import EventsRequest, ExperienceEvent
from experience_sync.recall import SearchQuery

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
AGENT = "agent-s"
# Only the store's index ranks: the vector ranker is computed in memory alike.
BM25 = RecallConfig(rankers=["bm25"])

LESSONS = [
    "The payments API is down every Sunday night for maintenance",
    "Retry a failed payment once, then ask the user for another card",
    "The user prefers short answers without bullet points",
    "Invoices are emailed on the first business day of the month",
    "Refund requests need the order number and the card's last four digits",
    "Shipping to Norway takes ten days because of customs checks",
]
QUERIES = [
    "is the payment api down on sundays",
    "invoices emailed",
    "refund order number",
    "customs shipping norway",
    "card",
    "bullet answers",
    "nothing matches this zebra",
]


def ev(eid: str, kind: str, data: dict[str, Any], instance: str = "i1", t: float = 0) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": eid,
            "timestamp": T0 + timedelta(seconds=t),
            "source_instance": instance,
            "event_type": kind,
            "data": data,
        }
    )


def send(engine: MergeEngine, *events: ExperienceEvent) -> Any:
    return engine.ingest_events(
        AGENT, EventsRequest(instance_id=events[0].source_instance, events=list(events))
    )


def teach(engine: MergeEngine) -> None:
    send(engine, *[ev(f"m{i}", "memory", {"content": c}) for i, c in enumerate(LESSONS)])
    send(engine, ev("s1", "skill", {"name": "payments_api", "proficiency": 0.6,
                                    "usage": {"invocations": 4, "successes": 3}}))


def hits(engine: MergeEngine, q: str, **query: Any) -> list[tuple[str, str]]:
    return [(h.kind, h.text) for h in engine.search(AGENT, SearchQuery(q=q, **query)).hits]


def texts(engine: MergeEngine, q: str, **query: Any) -> list[str]:
    return [text for _, text in hits(engine, q, **query)]


def _register_postgres(register_plugin: Callable[..., str]) -> None:
    import experience_sync_postgres.plugin

    register_plugin(experience_sync_postgres.plugin, name="postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Any, register_plugin: Callable[..., str]
) -> str:
    """The URL of an empty store of each kind (postgres is a plugin, registered here)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    _register_postgres(register_plugin)
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_engine(store_url: str) -> Iterator[Callable[..., MergeEngine]]:
    """Engines on the test's store (each opens the store anew, as a restarted hub does)."""
    engines: list[MergeEngine] = []

    def _make(recall: RecallConfig = BM25, **strategy: Any) -> MergeEngine:
        engine = MergeEngine(open_store(store_url), MergeStrategyConfig(**strategy), recall=recall)
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.close()


class ReindexCount:
    """Counts a store's reindex calls (the store still does them)."""

    def __init__(self, store: Store) -> None:
        self.calls: list[int] = []
        real = store.reindex

        def reindex(agent_id: str, documents: Any, cursor: int) -> None:
            self.calls.append(len(documents))
            real(agent_id, documents, cursor)

        store.reindex = reindex  # type: ignore[method-assign]


def drop_index_tables(store_url: str) -> None:
    """Make the store look like one written before search existed."""
    if store_url.startswith("sqlite"):
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'"
        ).fetchall():
            db.execute(f"DROP TABLE {name}")
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'recall%'"
        ).fetchall():
            db.execute(f"DROP TABLE {name}")
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("DROP TABLE xs_search_docs, xs_search_cursors")


# --------------------------------------------------------------------------- tests


def test_the_store_keeps_its_own_index(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    assert engine.store.text_index
    teach(engine)
    assert engine.store.search_cursor(AGENT) == engine.state(AGENT).cursor
    found = engine.store.search_text(AGENT, "payments api", ["memory", "skill"], "integrated", 10)
    assert {kind for (kind, _), _ in found} == {"memory", "skill"}
    assert all(score > 0 for _, score in found)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


def test_the_same_events_give_the_same_hits_on_both_stores(
    make_engine: Callable[..., MergeEngine], tmp_path: Any
) -> None:
    engine = make_engine()
    reference = MergeEngine(open_store(f"sqlite:///{tmp_path}/reference.db"), recall=BM25)
    try:
        for e in (engine, reference):
            teach(e)
        for q in QUERIES:
            assert sorted(hits(engine, q, k=20)) == sorted(hits(reference, q, k=20)), q
        # where one document matches clearly best, both rank it first
        assert texts(engine, "is the payment api down on sundays")[0] == LESSONS[0]
        assert texts(engine, "customs shipping norway")[0] == LESSONS[5]
        assert texts(engine, "invoices emailed") == [LESSONS[3]]
        assert texts(engine, "nothing matches this zebra") == []
        for kinds in (["memory"], ["skill"], ["knowledge"]):
            assert sorted(hits(engine, "payments", kinds=kinds)) == sorted(
                hits(reference, "payments", kinds=kinds))
    finally:
        reference.close()


def test_a_superseded_statement_never_comes_back_only_the_winner(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine(conflict_resolution="latest_wins")
    send(engine, ev("a", "memory", {"content": "Order 1234 shipped to Paris"}))
    send(engine, ev("b", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    assert texts(engine, "order 1234 paris") == ["Order 9876 shipped to Paris"]
    assert texts(engine, "1234") == []
    # and not from the stored index either, after a restart
    again = make_engine(conflict_resolution="latest_wins")
    assert texts(again, "1234") == []
    assert texts(again, "9876") == ["Order 9876 shipped to Paris"]


def test_pending_knowledge_only_with_pending_or_all(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    fact = {"content": "Refunds take five business days", "subject": "refund delay",
            "confidence": 0.95}
    rumour = {"content": "Invoices may move to weekly billing", "subject": "invoice cadence",
              "confidence": 0.9}
    send(engine, ev("k1", "knowledge", fact, "i1"), ev("r1", "knowledge", rumour, "i1"))
    assert texts(engine, "refund delay") == []
    assert texts(engine, "refund delay", knowledge_status="pending") == [
        "refund delay: Refunds take five business days"]
    for i in (2, 3, 4):
        send(engine, ev(f"k{i}", "knowledge", fact, f"i{i}", t=i))
    assert texts(engine, "refund delay") == ["refund delay: Refunds take five business days"]
    assert texts(engine, "refund delay", knowledge_status="pending") == []
    assert texts(engine, "invoice cadence") == []
    assert texts(engine, "invoice cadence", knowledge_status="pending") == [
        "invoice cadence: Invoices may move to weekly billing"]
    assert len(hits(engine, "refund delay invoice cadence", knowledge_status="all")) == 2


def test_a_restart_answers_the_same_without_reindexing(
    make_engine: Callable[..., MergeEngine],
) -> None:
    first = make_engine()
    teach(first)
    before = {q: hits(first, q, k=20) for q in QUERIES}
    first.close()
    engine = make_engine()
    count = ReindexCount(engine.store)
    assert {q: hits(engine, q, k=20) for q in QUERIES} == before
    send(engine, ev("n1", "memory", {"content": "Gift vouchers expire after one year"}))
    assert texts(engine, "gift vouchers") == ["Gift vouchers expire after one year"]
    assert count.calls == []


def test_a_store_made_before_search_is_reindexed_on_load(
    make_engine: Callable[..., MergeEngine], store_url: str
) -> None:
    first = make_engine()
    teach(first)
    before = {q: hits(first, q, k=20) for q in QUERIES}
    first.close()
    drop_index_tables(store_url)
    engine = make_engine()  # opening the store creates the index tables again
    count = ReindexCount(engine.store)
    assert engine.store.search_cursor(AGENT) is None
    assert {q: hits(engine, q, k=20) for q in QUERIES} == before
    assert count.calls == [len(LESSONS) + 1]
    assert engine.store.search_cursor(AGENT) == engine.state(AGENT).cursor
    # later commits keep it current
    send(engine, ev("n1", "memory", {"content": "Gift vouchers expire after one year"}))
    assert texts(make_engine(), "gift vouchers") == ["Gift vouchers expire after one year"]


def test_replay_resets_and_rebuilds_the_index(make_engine: Callable[..., MergeEngine]) -> None:
    from experience_sync.hub.replay import replay

    engine = make_engine()
    teach(engine)
    send(engine, ev("x", "memory", {"content": "Order 1234 shipped to Paris"}))
    send(engine, ev("y", "memory", {"content": "Order 9876 shipped to Paris"}, "i2", t=5))
    engine.close()
    store = make_engine().store
    replay(store, AGENT, MergeStrategyConfig(conflict_resolution="manual_review"))
    fresh = make_engine()
    # Under manual_review the later statement waits for review: the first stays.
    assert texts(fresh, "paris") == ["Order 1234 shipped to Paris"]
    assert texts(fresh, "invoices emailed") == [LESSONS[3]]


def test_an_unknown_agent_finds_nothing(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    assert engine.search("nobody", SearchQuery(q="payments")).hits == []
    assert engine.store.search_text("nobody", "payments", ["memory"], "integrated", 5) == []


def test_free_text_with_a_nul_is_indexed(make_engine: Callable[..., MergeEngine]) -> None:
    engine = make_engine()
    send(engine, ev("z", "memory", {"content": "Pager\x00duty rota changes on Mondays"}))
    assert [h.kind for h in engine.search(AGENT, SearchQuery(q="rota mondays")).hits] == ["memory"]


def _ops_skills(system: str) -> list[ExperienceEvent]:
    """Skills named after a system whose uses say the system's name, as tools' are."""
    ident = system.replace(" ", "_")
    uses = {
        f"rotate_keys_{ident}": [f"Rotating leaked keys of the {system}"],
        f"restart_{ident}": [f"Restarting the {system} after it hangs"],
        f"scale_up_{ident}": [f"Scaling the {system} up before a traffic peak"],
    }
    return [
        ev(f"s-{name}", "skill", {"name": name, "category": "ops",
                                  "usage": {"invocations": 2, "successes": 2, "contexts": ctx}})
        for name, ctx in uses.items()
    ]


def test_a_skill_name_does_not_outweigh_a_memory_that_says_the_words(
    make_engine: Callable[..., MergeEngine],
) -> None:
    # A skill's name repeats the words its uses say: split at the underscores
    # it counted them once more, and skills outranked the memory that answers
    # (benchmarks/recall_data: "Payments API rate limit" found only skills).
    engine = make_engine()
    answer = "The loyalty program allows 120 requests a minute."
    send(engine, ev("m1", "memory", {"content": answer}),
         ev("m2", "memory", {"content": "Every Monday the billing service is offline."}),
         ev("m3", "memory", {"content": "Invoices are emailed on the first business day."}))
    send(engine, *_ops_skills("loyalty program"))
    found = texts(engine, "Loyalty program rate limit", k=10)
    assert found[0] == answer
    assert len(found) == 4  # the skills still match, below the memory


def test_an_identifier_is_found_by_its_name_and_by_its_words(
    make_engine: Callable[..., MergeEngine],
) -> None:
    engine = make_engine()
    teach(engine)  # the skill payments_api, used in no recorded context
    assert hits(engine, "payments_api")[0] == ("skill", "payments_api")
    assert ("skill", "payments_api") in hits(engine, "payments api", k=10)
    send(engine, ev("m-id", "memory", {"content": "Set max_retries to 3 for the nightly job"}),
         ev("m-words", "memory", {"content": "Retries of the export max out at five"}))
    assert texts(engine, "max_retries")[0] == "Set max_retries to 3 for the nightly job"
    assert set(texts(engine, "max retries", k=10)) >= {
        "Set max_retries to 3 for the nightly job", "Retries of the export max out at five"}
    # a hit shows the text as recorded, never the index's spelling of it
    assert "paymentsapi" not in " ".join(texts(engine, "payments api", k=10))


def _downgrade_index(store_url: str) -> None:
    """Make the store's index look like one written by index version 1 (text indexed as is)."""
    if store_url.startswith("sqlite"):
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for (tag,) in db.execute("SELECT tag FROM recall_agents").fetchall():
            fts, docs = f"recall_fts_{tag}", f"recall_docs_{tag}"
            rows = db.execute(f"SELECT id, text, kind, CASE WHEN local THEN 'local' ELSE status "
                              f"END FROM {docs}").fetchall()
            db.execute(f"DROP TABLE {fts}")
            db.execute(f"ALTER TABLE {docs} DROP COLUMN text")  # versions 1 and 2 kept it in {fts}
            db.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5(text, kind UNINDEXED, "
                       "status UNINDEXED, tokenize='porter unicode61 remove_diacritics 2')")
            db.executemany(f"INSERT INTO {fts} (rowid, text, kind, status) VALUES (?, ?, ?, ?)",
                           rows)
        db.execute("DROP TABLE recall_meta")
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("UPDATE xs_search_docs SET text = replace(text, 'paymentsapi', 'payments_api')")
        conn.execute("DROP TABLE xs_search_meta")


def test_an_index_of_an_older_version_is_rebuilt_on_open(
    make_engine: Callable[..., MergeEngine], store_url: str
) -> None:
    first = make_engine()
    teach(first)
    send(first, *_ops_skills("loyalty program"))
    queries = [*QUERIES, "payments_api", "loyalty program restart"]
    before = {q: hits(first, q, k=20) for q in queries}
    first.close()
    _downgrade_index(store_url)
    engine = make_engine()
    count = ReindexCount(engine.store)
    assert {q: hits(engine, q, k=20) for q in queries} == before
    if store_url.startswith("sqlite"):
        assert count.calls == []  # rebuilt from the texts it held, when the store opened
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        tag = db.execute("SELECT tag FROM recall_agents").fetchone()[0]
        # the fused token is indexed, the text kept as recorded
        assert db.execute(f"SELECT d.text FROM recall_fts_{tag} JOIN recall_docs_{tag} d ON "
                          f"d.id = recall_fts_{tag}.rowid WHERE recall_fts_{tag} MATCH 'paymentsapi'"
                          ).fetchall() == [("payments_api",)]
        db.close()
    else:
        assert count.calls == [len(LESSONS) + 4]  # reindexed when the hub loaded the agent
    assert engine.store.search_cursor(AGENT) == engine.state(AGENT).cursor
    engine.close()
    again = make_engine()  # the upgrade runs once
    count = ReindexCount(again.store)
    assert hits(again, "payments_api", k=20) == before["payments_api"]
    assert count.calls == []


# --------------------------------------------------------------------------- several hubs


@pytest.fixture
def shared(store_url: str, make_engine: Callable[..., MergeEngine]) -> Callable[..., MergeEngine]:
    """Hubs sharing one database: PostgreSQL only (SQLite has one writer)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("one process writes a sqlite store")
    return make_engine


def test_hubs_see_each_others_commits(shared: Callable[..., MergeEngine]) -> None:
    a, b = shared(), shared()
    teach(a)
    send(b, ev("n1", "memory", {"content": "Gift vouchers expire after one year"}, "i2", t=1))
    assert texts(a, "gift vouchers") == ["Gift vouchers expire after one year"]
    assert texts(b, "invoices emailed") == [LESSONS[3]]


def test_a_stale_reindex_does_not_roll_the_index_back(shared: Callable[..., MergeEngine]) -> None:
    a, b = shared(), shared()
    teach(a)
    # Hub a holds the agent at this cursor and its documents, as when it loads
    # the agent and reindexes; hub b commits before a's reindex runs.
    rt = a._runtime(AGENT)
    stale_docs, stale_cursor = rt.documents(), rt.cursor
    send(b, ev("n1", "memory", {"content": "Gift vouchers expire after one year"}, "i2", t=1))
    a.store.reindex(AGENT, stale_docs, stale_cursor)
    assert a.store.search_cursor(AGENT) == b.state(AGENT).cursor
    assert texts(b, "gift vouchers") == ["Gift vouchers expire after one year"]
    assert texts(shared(), "gift vouchers") == ["Gift vouchers expire after one year"]
    assert texts(shared(), "invoices emailed") == [LESSONS[3]]


def test_concurrent_hubs_leave_a_complete_index(shared: Callable[..., MergeEngine]) -> None:
    hubs = [shared(), shared(), shared()]
    errors: list[BaseException] = []
    rng = random.Random(7)
    # Unrelated words, so no memory is taken for a duplicate of another.
    contents = {
        (n, i): f"codeword{n}x{i} " + " ".join(
            "".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(6))
        for n in range(3) for i in range(8)
    }

    def work(n: int, hub: MergeEngine) -> None:
        try:
            for i in range(8):
                content = contents[n, i]
                send(hub, ev(f"e{n}-{i}", "memory", {"content": content}, f"i{n}", t=i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, h)) for n, h in enumerate(hubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = shared()
    count = ReindexCount(fresh.store)
    for n in range(3):
        for i in range(8):
            assert texts(fresh, f"codeword{n}x{i}") == [contents[n, i]]
    assert count.calls == []  # the commits kept the index complete
    assert fresh.store.search_cursor(AGENT) == fresh.state(AGENT).cursor
