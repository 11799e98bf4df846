"""Retention, compaction, export/import and online backup, as an operator runs them.

Real hubs on loopback with SQLite files (and PostgreSQL for the import
target), the CLI through its entry (``build_cli``), instances over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hub_helpers import auth, batch_body, events_body

from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig, RetentionConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.web.server import HubServer
from experience_sync.models import new_id
from experience_sync.stores.sqlite import SQLiteStore
from experience_sync.stores.state import ChangeSet


def _cli(*args: str) -> Any:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def _interaction(instance: str, days_ago: float, text: str) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "timestamp": (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat(),
        "source_instance": instance,
        "event_type": "interaction",
        "data": {"summary": text, "outcome": "ok"},
        "context": {"conversation_id": "c1", "environment": {"user": text}},
    }


def _seed(hub: HubServer, agent: str = "a1") -> None:
    for instance in ("i1", "i2"):
        token = hub.create_token(agent, instance)
        for _ in range(3):
            r = httpx.post(f"{hub.url}/v1/agents/{agent}/events",
                           json=events_body(instance, 4), headers=auth(token))
            assert r.status_code == 200, r.text
        r = httpx.post(f"{hub.url}/v1/agents/{agent}/batches",
                       json=batch_body(instance, 3), headers=auth(token))
        assert r.status_code == 200, r.text
        body = {"instance_id": instance, "events": [
            _interaction(instance, 40, f"old talk with Alice {instance}"),
            _interaction(instance, 1, f"new talk with Bob {instance}"),
        ]}
        r = httpx.post(f"{hub.url}/v1/agents/{agent}/events", json=body, headers=auth(token))
        assert r.status_code == 200, r.text


def _state(store_url: str, agent: str = "a1") -> Any:
    engine = MergeEngine(open_store(store_url), MergeStrategyConfig())
    try:
        return engine.state(agent)
    finally:
        engine.close()


@pytest.fixture
def postgres_store(postgres_url: str, register_plugin: Callable[..., str]) -> str:
    """The session's PostgreSQL as a store URL (the postgres plugin registered)."""
    import experience_sync_postgres.plugin

    register_plugin(experience_sync_postgres.plugin, name="postgres")
    return postgres_url


def test_export_import_round_trip(
    tmp_path: Path, make_hub: Callable[..., HubServer], postgres_store: str
) -> None:
    """Export a (compacted, then grown) agent and import it into SQLite and PostgreSQL."""
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(store_url=source)
    _seed(hub)
    hub.close()
    assert _cli("compact", "--store", source).exit_code == 0
    hub = make_hub(store_url=source)
    _seed(hub)  # more after the snapshot, from instances already known
    hub.close()
    live = _state(source)

    out = tmp_path / "a1.jsonl"
    exported = _cli("export", "--agent", "a1", "--store", source, "--output", str(out))
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["format"] == "experience-sync-export" and lines[0]["version"] == 1
    assert lines[0]["cursor"] == live.cursor
    assert lines[-1] == {"type": "end", "records": len(lines) - 2}
    assert {r["type"] for r in lines[1:-1]} == {"log", "seen", "unit", "instance"}
    assert lines[1]["kind"] == "snapshot"

    for target in (f"sqlite:///{tmp_path / 'copy.db'}", postgres_store):
        imported = _cli("import", str(out), "--store", target)
        assert imported.exit_code == 0, imported.output
        assert _state(target) == live
        # Units, instances and compacted ids came along: a resend is a duplicate.
        again = MergeEngine(open_store(target), MergeStrategyConfig())
        src = open_store(source)
        try:
            ids = [e.entry_id for e in src.iter_log("a1") if e.kind == "event"]
            ids += list(src.iter_compacted("a1"))
            assert again.store.seen_events("a1", ids) == set(ids)
            assert {i.instance_id for i in again.instances("a1")} == {"i1", "i2"}
            assert dict(again.store.iter_units("a1")) == dict(src.iter_units("a1"))
        finally:
            again.close()
            src.close()
        # Importing twice is refused: the target holds the agent.
        twice = CliRunner().invoke(build_cli(), ["import", str(out), "--store", target])
        assert twice.exit_code == 1 and "already holds agent 'a1'" in twice.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: [{**lines[0], "version": 2}, *lines[1:]],
         "unknown export format version 2: this experience-sync imports version 1"),
        (lambda lines: [{**lines[0], "format": "other"}, *lines[1:]],
         "not an experience-sync export"),
        (lambda lines: lines[:-3], "truncated"),
        (lambda lines: [*lines[:2], {"type": "mystery"}, *lines[2:]], "unknown record type"),
    ],
)
def test_import_refuses_a_file_it_cannot_read(
    tmp_path: Path, make_hub: Callable[..., HubServer],
    edit: Callable[[list[Any]], list[Any]], message: str,
) -> None:
    """An unknown version, another format, a truncated file: a clear error, nothing imported."""
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(store_url=source)
    _seed(hub)
    hub.close()
    out = tmp_path / "a1.jsonl"
    assert _cli("export", "--agent", "a1", "--store", source, "-o", str(out)).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in edit(lines)))
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = CliRunner().invoke(build_cli(), ["import", str(bad), "--store", target])
    assert result.exit_code == 1
    assert message in result.output
    assert open_store(target).agents() == []


def test_export_of_an_unknown_agent_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_cli(), ["export", "--agent", "nobody", "--store", f"sqlite:///{tmp_path / 'h.db'}"]
    )
    assert result.exit_code == 1 and "no agent 'nobody'" in result.output


def test_backup_while_the_hub_ingests(tmp_path: Path, make_hub: Callable[..., HubServer]) -> None:
    """A backup taken mid-ingestion holds exactly what was committed at its cursor."""
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(store_url=source)
    tokens = {i: hub.create_token("a1", i) for i in ("i1", "i2")}
    acked: list[tuple[int, list[str]]] = []
    stop = threading.Event()
    errors: list[str] = []

    def instance(name: str) -> None:
        with httpx.Client(base_url=hub.url, headers=auth(tokens[name])) as client:
            while not stop.is_set():
                r = client.post("/v1/agents/a1/events", json=events_body(name, 5))
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                result = r.json()
                acked.append((result["cursor"], result["accepted_event_ids"]))

    threads = [threading.Thread(target=instance, args=(n,)) for n in tokens]
    for t in threads:
        t.start()
    while len(acked) < 20:
        time.sleep(0.01)
    target = tmp_path / "backup.db"
    during = len(acked)
    result = _cli("backup", str(target), "--store", source)
    assert result.exit_code == 0, result.output
    while len(acked) < during + 20:  # the hub kept serving through the backup
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    hub.close()

    # The restored backup served by a hub: its state is the live log's prefix at its cursor.
    restored = make_hub(store_url=f"sqlite:///{target}")
    backed = restored.engine.state("a1")
    cut = backed.cursor
    assert 0 < cut < max(c for c, _ in acked)
    committed = {e for c, ids in acked if c <= cut for e in ids}
    later = {e for c, ids in acked if c > cut for e in ids}
    logged = {e.entry_id for e in restored.engine.store.iter_log("a1")}
    assert logged == committed and not logged & later
    r = httpx.get(f"{restored.url}/v1/agents/a1/state",
                  headers=auth(restored.create_token("a1", "i1", "read")))
    assert r.status_code == 200 and r.json()["cursor"] == cut
    restored.close()

    prefix = SQLiteStore("sqlite:///:memory:")
    live = open_store(source)
    for entry in live.iter_log("a1"):
        if entry.request <= cut:
            prefix.commit("a1", ChangeSet(cursor=entry.request, log=[entry]))
    expected = replay(prefix, "a1", MergeStrategyConfig(),
                      target=open_store(f"sqlite:///{tmp_path / 'prefix.db'}"))
    assert backed.model_dump(exclude={"stats"}) == expected.model_dump(exclude={"stats"})
    assert backed.stats.total_events == expected.stats.total_events
    # The backup refuses to overwrite a file.
    again = CliRunner().invoke(build_cli(), ["backup", str(target), "--store", source])
    assert again.exit_code == 1 and "exists" in again.output


def test_retention_cli_expires_old_interactions(
    tmp_path: Path, make_hub: Callable[..., HubServer]
) -> None:
    """``experience-sync retention`` drops the text of interactions past their age, not newer."""
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(store_url=source)
    _seed(hub)
    hub.close()
    live = _state(source)
    config = tmp_path / "hub.toml"
    config.write_text('[retention]\ninteractions = "30d"\n')
    result = _cli("retention", "--store", source, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["expired"] == {"a1": 2}
    log = "\n".join(e.body for e in open_store(source).iter_log("a1"))
    assert "Alice" not in log and "Bob" in log
    assert _state(source) == live
    assert replay(open_store(source), "a1", MergeStrategyConfig()) == live


def test_retention_config_errors_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[retention]\ninteractions = "a month"\n')
    result = CliRunner().invoke(
        build_cli(), ["retention", "--store", f"sqlite:///{tmp_path / 'h.db'}",
                      "--config", str(config)]
    )
    assert result.exit_code == 1
    assert "retention.interactions" in result.output and "not a duration" in result.output


def test_a_serving_hub_applies_retention_on_its_schedule(
    tmp_path: Path, make_hub: Callable[..., HubServer]
) -> None:
    """With ``[retention]`` set, the running hub expires and compacts by itself."""
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(
        store_url=source,
        retention=RetentionConfig(interactions="30d", compact=True, interval="200ms"),
    )
    _seed(hub)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kinds = [e.kind for e in hub.engine.store.iter_log("a1")]
        if kinds == ["snapshot"]:
            break
        time.sleep(0.05)
    assert kinds == ["snapshot"]
    live = hub.engine.state("a1")
    # The hub keeps serving: a new event lands after the snapshot.
    token = hub.create_token("a1", "i3")
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i3", 1), headers=auth(token))
    assert r.status_code == 200
    assert r.json()["cursor"] == live.cursor + 1
    hub.close()


def _item(kind: str, instance: str, days_ago: float, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "timestamp": (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat(),
        "source_instance": instance,
        "event_type": kind,
        "data": data,
    }


def test_retention_forgets_memories_and_pending_knowledge_past_their_age(
    tmp_path: Path, make_hub: Callable[..., HubServer]
) -> None:
    """``retention.memories`` / ``pending_knowledge``: old items are forgotten, fresh ones kept.

    A memory another instance reinforced recently is fresh; integrated
    knowledge stays whatever its age; the text leaves the log, the search
    index and the state, the audit trail names the retention scope, and
    replay equals the live state.
    """
    source = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = make_hub(store_url=source)
    old_text = "Carol from accounting prefers invoices by fax"
    sends = {
        "i1": [
            _item("memory", "i1", 400, {"content": old_text}),
            _item("memory", "i1", 400, {"content": "The staging cluster restarts every Sunday night"}),
            _item("memory", "i1", 3, {"content": "The VPN needs a new certificate each quarter"}),
            _item("knowledge", "i1", 200, {"subject": "fax line", "content": "The fax line is 555-0100",
                                           "confidence": 0.9}),
            _item("knowledge", "i1", 200, {"subject": "capital", "content": "Paris is the capital of France",
                                           "confidence": 0.9}),
        ],
        "i2": [
            # reinforces the Sunday restart memory: no longer old
            _item("memory", "i2", 2, {"content": "The staging cluster restarts every Sunday night."}),
            _item("knowledge", "i2", 150, {"subject": "capital", "content": "Paris is the capital of France",
                                           "confidence": 0.9}),
        ],
    }
    for instance, events in sends.items():
        token = hub.create_token("a1", instance)
        r = httpx.post(f"{hub.url}/v1/agents/a1/events",
                       json={"instance_id": instance, "events": events}, headers=auth(token))
        assert r.status_code == 200, r.text
    hub.close()
    before = _state(source)
    assert len(before.memories) == 3
    assert {k.subject: k.status for k in before.knowledge} == {"fax line": "pending",
                                                               "capital": "integrated"}
    config = tmp_path / "hub.toml"
    config.write_text('[retention]\nmemories = "365d"\npending_knowledge = "90d"\n')
    result = _cli("retention", "--store", source, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["forgotten"] == {"a1": {"memories": 1, "knowledge": 1}}
    after = _state(source)
    assert sorted(m.content for m in after.memories) == [
        "The VPN needs a new certificate each quarter",
        "The staging cluster restarts every Sunday night",
    ]
    assert [k.subject for k in after.knowledge] == ["capital"]
    store = open_store(source)
    log = "\n".join(e.body for e in store.iter_log("a1"))
    assert "Carol" not in log and "555-0100" not in log and "Sunday" in log
    engine = MergeEngine(store, MergeStrategyConfig())
    try:
        from experience_sync.recall.models import SearchQuery

        hits = engine.search("a1", SearchQuery(q="Carol invoices fax", knowledge_status="all"))
        assert all("Carol" not in h.text and "fax" not in h.text for h in hits.hits)
        (audit,) = engine.store.forget_records("a1")
        assert audit.principal_scope == "retention" and "Carol" not in audit.model_dump_json()
    finally:
        engine.close()
    assert replay(open_store(source), "a1", MergeStrategyConfig()) == after
    # A second pass finds nothing more to forget.
    again = _cli("retention", "--store", source, "--config", str(config))
    assert json.loads(again.output)["forgotten"] == {}


def test_retention_cli_overrides_and_refuses_a_bad_age(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'h.db'}"
    bad = CliRunner().invoke(build_cli(), ["retention", "--store", store, "--memories", "a year"])
    assert bad.exit_code == 1
    assert "retention.memories" in bad.output and "not a duration" in bad.output
    nothing = CliRunner().invoke(build_cli(), ["retention", "--store", store])
    assert nothing.exit_code == 2 and "retention.memories" in nothing.output
    ok = CliRunner().invoke(build_cli(), ["retention", "--store", store, "--pending-knowledge", "90d"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["forgotten"] == {}
