"""The ElizaOS bridge end to end: a real hub and a real bridge on loopback, an
``ExperienceSyncManager`` with its SQLite outbox in between. Events are posted
as the TypeScript plugin posts them; the assertions are on what the hub merged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

pytest.importorskip("experience_sync.hub.engine", reason="the hub's merge engine has not landed")

from experience_sync_elizaos import (
    WIRE_SCHEMA,
    BridgeServer,
    MappingOptions,
    create_bridge_app,
    start_manager,
)

from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "support-agent"
INSTANCE = "eliza-1"
SECRET = "bridge-secret"


@dataclass
class Setup:
    hub: HubServer
    bridge: BridgeServer
    manager: Any
    read_token: str
    data_dir: Path

    def post(self, events: list[dict[str, Any]], *, secret: str = SECRET,
             agent: dict[str, Any] | None = None) -> httpx.Response:
        body = {"schema": WIRE_SCHEMA, "agent": agent or {"id": "a1", "name": "Ada"},
                "events": events}
        return httpx.post(f"{self.bridge.url}/v1/elizaos/events", json=body,
                          headers={"Authorization": f"Bearer {secret}"}, timeout=10)

    def state(self) -> dict[str, Any]:
        assert self.manager.flush(timeout=15), "the outbox drained to the hub"
        r = httpx.get(f"{self.hub.url}/v1/agents/{AGENT}/state",
                      headers={"Authorization": f"Bearer {self.read_token}"}, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with run_in_thread() as hub:
        token = hub.create_token(AGENT, INSTANCE)
        read_token = hub.create_token(AGENT, INSTANCE, "read")
        manager = start_manager(hub=hub.url, agent=AGENT, token=token, instance_id=INSTANCE,
                                data_dir=tmp_path / "data")
        app = create_bridge_app(manager, INSTANCE, SECRET,
                                seen_path=tmp_path / "data" / "seen.sqlite3")
        try:
            with BridgeServer(app) as bridge:
                yield Setup(hub, bridge, manager, read_token, tmp_path)
        finally:
            manager.shutdown(10)


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"{type_}:{uuid.uuid4()}", "type": type_, "timestamp": 1_764_000_000_000,
            "roomId": "room-1", **fields}


def skill(state: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [s for s in state["skills"] if s["name"] == name]
    assert matches, f"skill {name} at the hub: {[s['name'] for s in state['skills']]}"
    return matches[0]


def test_actions_become_skill_usage_with_success_rate(setup: Setup) -> None:
    events = [ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=True, status="completed")
              for _ in range(3)]
    events.append(ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=False, status="failed",
                     error="timeout talking to the order API"))
    r = setup.post(events)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 4, "recorded": 4, "duplicates": 0, "ignored": 0}

    s = skill(setup.state(), "LOOKUP_ORDER")
    assert s["category"] == "elizaos-action"
    assert s["usage"]["total_invocations"] == 4
    assert s["usage"]["success_rate"] == pytest.approx(0.75)
    assert s["proficiency"] == pytest.approx(0.75)  # the success rate on this instance
    assert INSTANCE in s["source_instances"]


def test_memories_facts_and_evaluator_findings_are_merged(setup: Setup) -> None:
    r = setup.post([
        ev("MEMORY_CREATED", table="memories", text="Customers in Lyon prefer morning delivery"),
        ev("MEMORY_CREATED", table="facts", text="Order 42 ships from the Lyon warehouse"),
        ev("MEMORY_CREATED", table="messages", text="raw chat line"),
        ev("EVALUATOR_COMPLETED", evaluator="REFLECTION", completed=True,
           facts=["The returns window is 30 days"], summary="The user was satisfied"),
        ev("MESSAGE_RECEIVED", textLength=12, source="discord"),
        ev("RUN_ENDED", runId="run-1", status="completed", durationMs=800),
        ev("MODEL_USED", prompt="a prompt that must not travel"),
    ])
    assert r.status_code == 200, r.text
    assert r.json()["ignored"] == 2  # the messages-table memory and MODEL_USED

    state = setup.state()
    memories = {m["content"]: m for m in state["memories"]}
    assert set(memories) == {"Customers in Lyon prefer morning delivery", "The user was satisfied"}
    assert "elizaos" in memories["Customers in Lyon prefer morning delivery"]["tags"]
    knowledge = {k["content"] for k in state["knowledge"]}
    assert knowledge == {"Order 42 ships from the Lyon warehouse", "The returns window is 30 days"}
    assert state["stats"]["interactions"] == 2
    assert "a prompt that must not travel" not in str(state)


def test_retried_batch_is_recorded_once(setup: Setup) -> None:
    events = [ev("ACTION_COMPLETED", action="REFUND", success=True) for _ in range(2)]
    assert setup.post(events).json()["recorded"] == 2
    again = setup.post(events)  # the plugin did not get the answer and sends it again
    assert again.json() == {"received": 2, "recorded": 0, "duplicates": 2, "ignored": 0}
    assert skill(setup.state(), "REFUND")["usage"]["total_invocations"] == 2


def test_secrets_in_forwarded_text_are_redacted(setup: Setup) -> None:
    setup.post([ev("MEMORY_CREATED", table="memories",
                   text="Deploy key is sk-abcdefghijklmnopqrstuv1234 and password: hunter22")])
    [memory] = setup.state()["memories"]
    assert "sk-abc" not in memory["content"] and "hunter22" not in memory["content"]
    assert "[redacted]" in memory["content"]


def test_filter_hook_drops_events_before_the_outbox(tmp_path: Path, register_plugin: Any) -> None:
    from experience_sync import hookimpl

    class DropInternal:
        @hookimpl
        def experience_sync_filter_event(self, event: Any) -> Any:
            text = getattr(event.data, "content", "") or ""
            return None if "internal" in text else event

    register_plugin(DropInternal(), name="drop-internal")
    with run_in_thread() as hub:
        manager = start_manager(hub=hub.url, agent=AGENT, token=hub.create_token(AGENT, INSTANCE),
                                instance_id=INSTANCE, data_dir=tmp_path)
        try:
            with BridgeServer(create_bridge_app(manager, INSTANCE, SECRET)) as bridge:
                s = Setup(hub, bridge, manager, hub.create_token(AGENT, INSTANCE, "read"), tmp_path)
                s.post([ev("MEMORY_CREATED", table="memories", text="internal: staff codes"),
                        ev("MEMORY_CREATED", table="memories", text="Shipping takes 2 days")])
                assert [m["content"] for m in s.state()["memories"]] == ["Shipping takes 2 days"]
        finally:
            manager.shutdown(10)


def test_bridge_refuses_wrong_secret_and_bad_bodies(setup: Setup) -> None:
    assert setup.post([ev("RUN_ENDED")], secret="wrong").status_code == 401
    url = f"{setup.bridge.url}/v1/elizaos/events"
    auth = {"Authorization": f"Bearer {SECRET}"}
    bad = httpx.post(url, content=b'{"events": [{"type": "RUN_ENDED"}]}', headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == "events.0.id"
    schema = httpx.post(url, json={"schema": "experience-sync-elizaos/9", "events": []},
                        headers=auth)
    assert schema.status_code == 422
    big = httpx.post(url, json={"events": [ev("RUN_ENDED") for _ in range(1001)]}, headers=auth)
    assert big.status_code == 413
    assert httpx.get(f"{setup.bridge.url}/healthz").json()["instance_id"] == INSTANCE
    status = httpx.get(f"{setup.bridge.url}/v1/elizaos/status", headers=auth).json()
    assert status["bridge"]["requests"] == 0


def test_mapping_options_limit_tables_and_text(tmp_path: Path) -> None:
    from experience_sync_elizaos import map_event

    opts = MappingOptions(memory_tables=frozenset({"memories"}), max_text_length=10)
    assert map_event(ev("MEMORY_CREATED", table="facts", text="x"), None, opts) == []
    [rec] = map_event(ev("MEMORY_CREATED", table="memories", text="a" * 50), None, opts)
    assert len(rec.content) == 10  # type: ignore[union-attr]
    assert map_event(ev("MESSAGE_RECEIVED"), None, MappingOptions(record_messages=False)) == []


def test_cli_command_is_registered_and_documents_its_options(tmp_path: Path) -> None:
    from experience_sync_elizaos import plugin

    from experience_sync.cli import build_cli

    cli = build_cli()
    plugin.experience_sync_register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["elizaos-bridge", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--hub", "--agent", "--token", "--listen", "--secret", "--instance"):
        assert option in result.output
    bad = CliRunner().invoke(cli, ["elizaos-bridge", "--hub", "http://127.0.0.1:1", "--agent",
                                   "a", "--token", "t", "--listen", "nonsense"])
    assert bad.exit_code == 2 and "host:port" in bad.output
    plain = CliRunner().invoke(cli, ["elizaos-bridge", "--hub", "http://192.0.2.1:8787",
                                     "--agent", "a", "--token", "t", "--secret", "s",
                                     "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)])
    assert plain.exit_code == 1 and "refused" in plain.output  # plain http off loopback


def test_full_outbox_answers_503_and_a_retry_skips_what_was_recorded(tmp_path: Path) -> None:
    from experience_sync import load_config

    config = load_config(outbox={"max_events": 2, "when_full": "refuse"}, environ={},
                         cwd=tmp_path)
    # a hub that is not there: nothing drains, so the outbox fills
    manager = start_manager(hub="http://127.0.0.1:9", agent=AGENT, token="t",
                            instance_id=INSTANCE, data_dir=tmp_path, config=config)
    try:
        with BridgeServer(create_bridge_app(manager, INSTANCE, SECRET)) as bridge:
            s = Setup(None, bridge, manager, "", tmp_path)  # type: ignore[arg-type]
            events = [ev("MEMORY_CREATED", table="memories", text=f"note {i}") for i in range(2)]
            events.append(ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=False))
            first = s.post(events)
            assert first.status_code == 503
            assert first.json()["error"]["details"]["recorded"] == 2
            again = s.post(events)  # what the plugin does with a 503
            assert again.status_code == 503
            assert again.json()["error"]["details"]["duplicates"] == 2
            status = httpx.get(f"{bridge.url}/v1/elizaos/status",
                               headers={"Authorization": f"Bearer {SECRET}"}).json()
            assert status["bridge"]["recorded"] == 2
    finally:
        manager.shutdown(1)


def test_recorded_ids_survive_a_bridge_restart(tmp_path: Path) -> None:
    with run_in_thread() as hub:
        manager = start_manager(hub=hub.url, agent=AGENT, token=hub.create_token(AGENT, INSTANCE),
                                instance_id=INSTANCE, data_dir=tmp_path)
        seen = tmp_path / "seen.sqlite3"
        events = [ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=True)]
        failure = [ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=False)]
        try:
            for batch, expected in ((events, {"recorded": 1, "duplicates": 0}),
                                    (events + failure, {"recorded": 1, "duplicates": 1})):
                app = create_bridge_app(manager, INSTANCE, SECRET, seen_path=seen)
                with BridgeServer(app) as bridge:
                    s = Setup(hub, bridge, manager, hub.create_token(AGENT, INSTANCE, "read"),
                              tmp_path)
                    got = s.post(batch).json()
                    assert {k: got[k] for k in expected} == expected
            learned = skill(s.state(), "LOOKUP_ORDER")
            assert learned["usage"]["total_invocations"] == 2
            # the success rate behind the proficiency was kept across the restart too
            assert learned["proficiency"] == pytest.approx(0.5)
        finally:
            manager.shutdown(10)


def test_oversized_body_is_refused(setup: Setup) -> None:
    # the largest texts the plugin sends fit easily
    ok = setup.post([ev("MEMORY_CREATED", table="memories", text=f"{i} " + "x" * 1990)
                     for i in range(50)])
    assert ok.status_code == 200
    huge = httpx.post(f"{setup.bridge.url}/v1/elizaos/events", timeout=10,
                      headers={"Authorization": f"Bearer {SECRET}"},
                      content=b'{"events": [' + b" " * (9 * 1024 * 1024) + b"]}")
    assert huge.status_code == 413


def test_a_failed_event_does_not_count_toward_the_success_rate(tmp_path: Path) -> None:
    from experience_sync_elizaos.bridge import SeenEvents

    seen = SeenEvents(tmp_path / "seen.sqlite3")
    with seen.transaction():
        with pytest.raises(RuntimeError), seen.event():
            seen.observe_skill("LOOKUP", True)
            raise RuntimeError("outbox full")
        assert seen.observe_skill("lookup", False) == 0.0  # only this use is counted
    seen.close()
    reopened = SeenEvents(tmp_path / "seen.sqlite3")
    assert reopened.observe_skill("LOOKUP", True) == 0.5
    reopened.close()
