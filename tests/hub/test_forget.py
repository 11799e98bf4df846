"""Forgetting, as an operator and a user see it: real hubs on loopback, real files.

A person's name is forgotten through ``DELETE /v1/agents/{agent_id}/experiences``
with an admin token, then looked for everywhere it was: the state and the
search route, the raw log table and every byte of the hub's SQLite file (and
its WAL), the FTS5 index, an instance's replica file after its next pull,
and the PostgreSQL tables. An instance that sends the deleted events again
gets them answered as duplicates; replay gives the live state; the audit
trail names who forgot, never what.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hub_helpers import auth, memory_event

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig
from experience_sync.forgetting import ForgetRequest
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.web.auth import split_token
from experience_sync.hub.web.server import HubServer
from experience_sync.models import new_id

NAME = "Zebulon Quarkwright"
NEEDLE = b"quarkwright"
AGENT = "a1"


def _event(instance: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": new_id(), "timestamp": datetime.now(timezone.utc).isoformat(),
        "source_instance": instance, "event_type": event_type, "data": data,
    }


def _workload() -> dict[str, list[dict[str, Any]]]:
    """What two instances send: the name in five events of four kinds, and unrelated ones."""
    return {
        "i1": [
            memory_event("i1", f"{NAME} prefers morning meetings"),
            memory_event("i1", "the staging database restarts on sundays"),
            _event("i1", "knowledge", {"content": "his phone is 415 555 0199",
                                       "subject": NAME, "confidence": 0.9}),
            _event("i1", "interaction", {"summary": f"helped {NAME.upper()} with a refund",
                                         "outcome": "ok"}),
        ],
        "i2": [
            memory_event("i2", "zebulon quarkwright's invoices go to the london office"),
            _event("i2", "characteristic", {"key": "vip_contact", "value": {"name": NAME}}),
            _event("i2", "skill", {"name": "refund handling", "proficiency": 0.6}),
            memory_event("i2", "customers like short answers"),
        ],
    }


def _send(hub: HubServer, token: str, instance: str, events: list[dict[str, Any]]) -> Any:
    r = httpx.post(f"{hub.url}/v1/agents/{AGENT}/events", headers=auth(token),
                   json={"instance_id": instance, "events": events})
    assert r.status_code == 200, r.text
    return r.json()


def _forget(hub: HubServer, token: str, body: Any) -> httpx.Response:
    return httpx.request("DELETE", f"{hub.url}/v1/agents/{AGENT}/experiences",
                         headers=auth(token), json=body)


def _file_bytes(path: Path) -> bytes:
    """The file and its WAL (and rollback journal), as they lie on disk."""
    out = b""
    for suffix in ("", "-wal", "-journal"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            out += part.read_bytes()
    return out.lower()


def _fts_hits(db: Path, word: str) -> int:
    conn = sqlite3.connect(db)
    try:
        # The FTS5 tables themselves (recall_fts_<tag>), not their shadow tables.
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = [t for t in names if t.startswith("recall_fts_") and t.count("_") == 2]
        return sum(conn.execute(f"SELECT count(*) FROM {t} WHERE {t} MATCH ?", (word,))
                   .fetchone()[0] for t in tables)
    finally:
        conn.close()


@pytest.fixture
def make_instance(tmp_path: Path) -> Iterator[Callable[..., ExperienceSyncManager]]:
    managers: list[ExperienceSyncManager] = []

    def _make(instance: str, url: str, token: str) -> ExperienceSyncManager:
        config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0},
                             transport={"https": {"auth_token": token}})
        manager = ExperienceSyncManager(config, data_dir=tmp_path / "instances")
        manager.initialize_sync(instance, agent_id=AGENT, endpoint=url)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        manager.shutdown(timeout=2)


def _search(hub: HubServer, token: str, q: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{hub.url}/v1/agents/{AGENT}/search", headers=auth(token),
                  params={"q": q, "k": 20, "knowledge_status": "all"})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


def test_a_forgotten_name_is_gone_from_state_log_index_replica_and_stays_gone(
    make_hub: Callable[..., HubServer],
    make_instance: Callable[..., ExperienceSyncManager],
    tmp_path: Path,
) -> None:
    db = tmp_path / "hub.db"
    hub = make_hub(store_url=f"sqlite:///{db}")
    writers = {i: hub.create_token(AGENT, i) for i in ("i1", "i2")}
    admin = hub.create_token(AGENT, "ops", "admin")
    workload = _workload()
    for instance, events in workload.items():
        _send(hub, writers[instance], instance, events)
    # A third instance's replica holds the name before the forget.
    reader = make_instance("r1", hub.url, hub.create_token(AGENT, "r1"))
    assert reader.refresh("r1", timeout=10)
    assert any("quarkwright" in h.text.lower() for h in reader.search("r1", "Quarkwright"))
    assert _search(hub, admin, "Quarkwright")
    assert NEEDLE in _file_bytes(db)

    r = _forget(hub, admin, {"query": NAME, "dry_run": True})
    assert r.status_code == 200 and r.json()["events_forgotten"] == 5
    assert NEEDLE in _file_bytes(db)  # a dry run changes nothing
    r = _forget(hub, admin, {"query": NAME})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["events_forgotten"] == 5
    assert result["removed"]["memories"] == 2 and result["removed"]["knowledge"] == 1
    assert result["removed"]["characteristics"] == 1

    # The state and the search route.
    state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", headers=auth(admin))
    assert NEEDLE not in state.content.lower()
    assert len(state.json()["memories"]) == 2 and state.json()["skills"]
    assert _search(hub, admin, "Quarkwright") == []
    assert _search(hub, admin, "zebulon") == []
    assert _search(hub, admin, "staging database")  # the rest stays searchable
    # The raw log table, the FTS5 index and every byte of the file and its WAL.
    conn = sqlite3.connect(db)
    bodies = [b for (b,) in conn.execute("SELECT body FROM log")]
    kinds = [k for (k,) in conn.execute("SELECT kind FROM log ORDER BY seq")]
    conn.close()
    assert not any("quarkwright" in b.lower() for b in bodies)
    assert kinds.count("forgotten") == 5 and kinds[-1] == "forget"
    assert _fts_hits(db, "quarkwright") == 0 and _fts_hits(db, "staging") == 1
    assert NEEDLE not in _file_bytes(db)

    # The replica drops it at its next pull, from its file too.
    assert reader.refresh("r1", timeout=10)
    assert not any("quarkwright" in h.text.lower() for h in reader.search("r1", "Quarkwright"))
    assert reader.search("r1", "staging database")
    replica = tmp_path / "instances" / "r1" / "replica.db"
    assert NEEDLE not in _file_bytes(replica)

    # Sent again (a retry after a lost ack, an instance restored from backup): duplicates.
    for instance, events in workload.items():
        again = _send(hub, writers[instance], instance, events)
        assert sorted(again["duplicate_event_ids"]) == sorted(e["event_id"] for e in events)
    assert NEEDLE not in httpx.get(f"{hub.url}/v1/agents/{AGENT}/state",
                                   headers=auth(admin)).content.lower()

    # The audit trail: who, what scope, how many; never the name.
    audit = httpx.get(f"{hub.url}/v1/agents/{AGENT}/forgets", headers=auth(admin))
    assert audit.status_code == 200 and NEEDLE not in audit.content.lower()
    (record,) = audit.json()
    parts = split_token(admin)
    assert parts is not None
    assert record["token_id"] == parts[0] and record["principal_scope"] == "admin"
    assert record["selectors"] == {"query": 1} and record["events_forgotten"] == 5

    # Replay of the log (copied into a new store) gives the live state.
    live = hub.engine.state(AGENT)
    target = open_store(f"sqlite:///{tmp_path}/replayed.db")
    try:
        assert replay(hub.hub.store, AGENT, MergeStrategyConfig(), target=target) == live
    finally:
        target.close()


def test_only_admin_tokens_forget_and_bad_requests_are_4xx(
    hub: HubServer,
) -> None:
    writer = hub.create_token(AGENT, "i1")
    _send(hub, writer, "i1", [memory_event("i1", f"{NAME} likes tea")])
    admin = hub.create_token(AGENT, "ops", "admin")
    for scope in ("read", "write", "review"):
        token = hub.create_token(AGENT, "i1", scope)  # type: ignore[arg-type]
        r = _forget(hub, token, {"query": NAME})
        assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
        r = httpx.get(f"{hub.url}/v1/agents/{AGENT}/forgets", headers=auth(token))
        assert r.status_code == 403
        r = httpx.delete(f"{hub.url}/v1/agents/{AGENT}/instances/i1", headers=auth(token))
        assert r.status_code == 403
    other = hub.create_token("a2", "ops", "admin")
    assert _forget(hub, other, {"query": NAME}).status_code == 403
    assert httpx.request("DELETE", f"{hub.url}/v1/agents/{AGENT}/experiences",
                         json={"query": NAME}).status_code == 401
    # An admin token forgets, but never sends experiences.
    r = httpx.post(f"{hub.url}/v1/agents/{AGENT}/events", headers=auth(admin),
                   json={"instance_id": "ops", "events": [memory_event("ops", "x y z")]})
    assert r.status_code == 403
    bad: list[tuple[Any, int, str]] = [
        (b"{not json", 400, ""),
        ({}, 422, "(body)"),
        ([], 422, "(body)"),
        ({"query": "   "}, 422, "(body)"),
        ({"query": ""}, 422, "query"),
        ({"query": NAME, "colour": "red"}, 422, "colour"),
        ({"memory_ids": "m1"}, 422, "memory_ids"),
    ]
    for body, status, loc in bad:
        r = httpx.request(
            "DELETE", f"{hub.url}/v1/agents/{AGENT}/experiences",
            headers={**auth(admin), "Content-Type": "application/json"},
            content=body if isinstance(body, bytes) else None,
            json=None if isinstance(body, bytes) else body,
        )
        assert r.status_code == status, (body, r.text)
        error = r.json()["error"]
        assert error["status"] == status
        if loc:
            first = (error.get("details") or [{}])[0]
            assert first.get("loc") == loc or error["message"].startswith(loc), error
    for path in ("memories/nope", "knowledge/nope", "skills/nope", "instances/nope"):
        r = httpx.delete(f"{hub.url}/v1/agents/{AGENT}/{path}", headers=auth(admin))
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    # Nothing was forgotten by any of these.
    assert NEEDLE in httpx.get(f"{hub.url}/v1/agents/{AGENT}/state",
                               headers=auth(admin)).content.lower()
    assert httpx.get(f"{hub.url}/v1/agents/{AGENT}/forgets", headers=auth(admin)).json() == []


def test_forget_one_memory_knowledge_item_skill_or_instance(hub: HubServer) -> None:
    writers = {i: hub.create_token(AGENT, i) for i in ("i1", "i2")}
    admin = hub.create_token(AGENT, "ops", "admin")
    for instance, events in _workload().items():
        _send(hub, writers[instance], instance, events)

    def state() -> dict[str, Any]:
        r = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", headers=auth(admin))
        body: dict[str, Any] = r.json()
        return body

    def delete(path: str, **params: Any) -> dict[str, Any]:
        r = httpx.delete(f"{hub.url}/v1/agents/{AGENT}/{path}", headers=auth(admin),
                         params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    before = state()
    memory = next(m for m in before["memories"] if "staging" in m["content"])
    assert delete(f"memories/{memory['memory_id']}", dry_run="true")["dry_run"]
    assert len(state()["memories"]) == len(before["memories"])
    assert delete(f"memories/{memory['memory_id']}")["removed"]["memories"] == 1
    assert all(m["memory_id"] != memory["memory_id"] for m in state()["memories"])
    item = before["knowledge"][0]
    assert delete(f"knowledge/{item['key']}")["removed"]["knowledge"] == 1
    assert state()["knowledge"] == []
    skill = before["skills"][0]
    assert delete(f"skills/{skill['skill_id']}")["removed"]["skills"] == 1
    assert state()["skills"] == []
    gone = delete("instances/i2")
    assert gone["events_forgotten"] == 3  # two memories and a characteristic (the skill went)
    after = state()
    assert all("i2" not in m["source_instances"] for m in after["memories"])
    assert after["characteristics"] == {}
    audit = httpx.get(f"{hub.url}/v1/agents/{AGENT}/forgets", headers=auth(admin)).json()
    assert [r["selectors"] for r in audit] == [
        {"memory_ids": 1}, {"knowledge_ids": 1}, {"skill_ids": 1}, {"instance_ids": 1}
    ]
    assert audit[-1]["instance_ids"] == ["i2"]


def test_the_outbox_purges_unsent_events_that_match(tmp_path: Path) -> None:
    # No hub listens on this port: everything recorded stays unsent.
    config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0})
    manager = ExperienceSyncManager(config, data_dir=tmp_path / "instances")
    manager.initialize_sync("i1", agent_id=AGENT, endpoint="http://127.0.0.1:9")
    try:
        manager.record_memory("i1", f"{NAME} lives on elm street")
        manager.record_memory("i1", "deploys happen on tuesdays")
        manager.record_knowledge("i1", "likes green tea", subject=NAME)
        assert manager.flush("i1", timeout=0.5) is False
        counts = manager.forget_unsent("i1", ForgetRequest(query=NAME))
        assert counts["outbox"] == 2
        assert manager.status("i1").backlog_size == 1
        outbox = tmp_path / "instances" / "i1" / "outbox.db"
        assert NEEDLE not in _file_bytes(outbox)
        rows = sqlite3.connect(outbox).execute("SELECT body FROM outbox").fetchall()
        assert len(rows) == 1 and b"tuesdays" in rows[0][0]
    finally:
        manager.shutdown(timeout=1)


def test_cli_forgets_through_a_running_hub_and_reads_the_audit(hub: HubServer) -> None:
    writer = hub.create_token(AGENT, "i1")
    admin = hub.create_token(AGENT, "ops", "admin")
    _send(hub, writer, "i1", [memory_event("i1", f"{NAME} likes tea"),
                              memory_event("i1", "the build takes nine minutes")])
    runner = CliRunner()
    cli = build_cli()
    args = ["--agent", AGENT, "--endpoint", hub.url, "--token", admin]
    result = runner.invoke(cli, ["forget", "query", NAME, *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would forget 1 events" in result.output
    result = runner.invoke(cli, ["forget", "query", NAME, *args])
    assert result.exit_code == 0 and "forgot 1 events" in result.output
    result = runner.invoke(cli, ["forget", "audit", *args[:-2], "--token", admin, "--json"])
    assert result.exit_code == 0 and '"query": 1' in result.output
    assert "quarkwright" not in result.output.lower()
    reader = hub.create_token(AGENT, "i1", "read")
    result = runner.invoke(cli, ["forget", "instance", "i1", *args[:-1], reader])
    assert result.exit_code == 1 and "403" in result.output


def test_cli_forgets_on_a_stopped_hubs_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = MergeEngine(open_store(url))
    from experience_sync.models import EventsRequest, ExperienceEvent

    engine.ingest_events(AGENT, EventsRequest(instance_id="i1", events=[
        ExperienceEvent.model_validate(memory_event("i1", f"{NAME} likes tea")),
        ExperienceEvent.model_validate(memory_event("i1", "the build takes nine minutes")),
    ]))
    engine.close()
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["forget", "query", "zebulon", "--agent", AGENT,
                                         "--store", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(build_cli(), ["forget", "audit", "--agent", AGENT, "--store", url])
    assert result.exit_code == 0 and "query=1" in result.output and "by cli" in result.output
    assert NEEDLE not in _file_bytes(tmp_path / "hub.db")


def test_postgres_store_forgets_from_its_tables_and_index(
    make_hub: Callable[..., HubServer],
    postgres_url: str,
    register_plugin: Callable[..., str],
) -> None:
    import experience_sync_postgres.plugin
    import psycopg

    register_plugin(experience_sync_postgres.plugin, name="postgres")
    hub = make_hub(store_url=postgres_url)
    writers = {i: hub.create_token(AGENT, i) for i in ("i1", "i2")}
    admin = hub.create_token(AGENT, "ops", "admin")
    workload = _workload()
    for instance, events in workload.items():
        _send(hub, writers[instance], instance, events)
    assert _search(hub, admin, "Quarkwright")
    r = _forget(hub, admin, {"query": NAME})
    assert r.status_code == 200 and r.json()["events_forgotten"] == 5
    with psycopg.connect(postgres_url) as conn:
        for table in ("xs_log", "xs_memories", "xs_knowledge", "xs_characteristics",
                      "xs_search_docs", "xs_forgets"):
            found = conn.execute(
                f"SELECT count(*) FROM {table} t WHERE t::text ILIKE %s", ("%quarkwright%",)
            ).fetchone()
            assert found == (0,), table
        tsv = conn.execute(
            "SELECT count(*) FROM xs_search_docs WHERE agent_id = %s "
            "AND tsv @@ to_tsquery('simple', 'quarkwright')", (AGENT,),
        ).fetchone() if _has_column(conn, "xs_search_docs", "tsv") else (0,)
        assert tsv == (0,)
        kinds = [k for (k,) in conn.execute("SELECT kind FROM xs_log ORDER BY seq")]
    assert kinds.count("forgotten") == 5 and kinds[-1] == "forget"
    assert _search(hub, admin, "Quarkwright") == []
    for instance, events in workload.items():
        again = _send(hub, writers[instance], instance, events)
        assert len(again["duplicate_event_ids"]) == len(events)
    live = hub.engine.state(AGENT)
    assert NEEDLE not in live.model_dump_json().lower().encode()
    assert replay(hub.hub.store, AGENT, MergeStrategyConfig()) == live


def _has_column(conn: Any, table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        (table, column),
    ).fetchone()
    return row is not None


def test_a_compacted_log_forgets_from_its_snapshot_too(
    make_hub: Callable[..., HubServer], tmp_path: Path
) -> None:
    from experience_sync.hub.retention import compact

    db = tmp_path / "hub.db"
    hub = make_hub(store_url=f"sqlite:///{db}")
    writers = {i: hub.create_token(AGENT, i) for i in ("i1", "i2")}
    admin = hub.create_token(AGENT, "ops", "admin")
    workload = _workload()
    _send(hub, writers["i1"], "i1", workload["i1"])
    assert compact(hub.engine, AGENT) == 4  # the name now lives in the snapshot's rows
    _send(hub, writers["i2"], "i2", workload["i2"])
    r = _forget(hub, admin, {"query": NAME})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["snapshot_rewritten"] and result["events_forgotten"] == 2  # i2's, in the log
    state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", headers=auth(admin))
    assert NEEDLE not in state.content.lower()
    assert any("staging" in m["content"] for m in state.json()["memories"])
    assert _search(hub, admin, "Quarkwright") == []
    assert NEEDLE not in _file_bytes(db)
    live = hub.engine.state(AGENT)
    target = open_store(f"sqlite:///{tmp_path}/replayed.db")
    try:
        assert replay(hub.hub.store, AGENT, MergeStrategyConfig(), target=target) == live
    finally:
        target.close()
    for instance, events in workload.items():  # compacted ids are still known too
        again = _send(hub, writers[instance], instance, events)
        assert len(again["duplicate_event_ids"]) == len(events)


def test_a_forget_leaves_every_other_memorys_id_as_it_was(tmp_path: Path) -> None:
    """Memory ids are named after their adding event's place in its request.

    Forgetting one memory of a request, or an event that merged into another
    memory, must not hand its id to a memory after it: a saved link or an
    instance's reference keeps naming the same memory.
    """
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = MergeEngine(open_store(store_url), MergeStrategyConfig())
    try:
        from experience_sync.hub.forget import forget
        from experience_sync.models import EventsRequest

        texts = [
            "The release train leaves every second Tuesday",
            "the release train leaves every second tuesday.",  # merges into the first
            "Invoices above ten thousand need the CFO's approval",
            "The build cache lives on the shared NFS volume",
            "Customers in Norway are billed in kroner",
        ]
        events = [_event("i1", "memory", {"content": t}) for t in texts]
        engine.ingest_events(AGENT, EventsRequest.model_validate(
            {"instance_id": "i1", "events": events}))
        before = {m.content: m.memory_id for m in engine.state(AGENT).memories}
        assert len(before) == 4
        # Forget the duplicate's event, then a memory in the middle of the request.
        forget(engine, AGENT, ForgetRequest(event_ids=[events[1]["event_id"]]))
        middle = before[texts[2]]
        forget(engine, AGENT, ForgetRequest(memory_ids=[middle]))
        after = {m.content: m.memory_id for m in engine.state(AGENT).memories}
        assert after == {t: i for t, i in before.items() if t != texts[2]}
        assert middle not in after.values()
        assert replay(open_store(store_url), AGENT, MergeStrategyConfig()) == engine.state(AGENT)
    finally:
        engine.close()
