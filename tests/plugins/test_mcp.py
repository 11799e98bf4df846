"""The MCP plugin against a real hub on loopback: the hub's /mcp tools and the mcp transport."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import experience_sync_mcp.plugin
import httpx
import pytest
from experience_sync_mcp import McpTransport
from experience_sync_mcp.server import McpEndpoint
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from experience_sync.config import load_config
from experience_sync.errors import ConfigError, RejectedError, RetryableError
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.interfaces import SyncRequest
from experience_sync.models import (
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    ExperienceEvent,
    MemoryData,
    ObservabilityEvent,
)
from experience_sync.plugins import get_plugin_manager

AGENT = "support-agent"


@pytest.fixture
def hub(register_plugin: Callable[..., str]) -> Iterator[HubServer]:
    register_plugin(experience_sync_mcp.plugin, name="mcp")
    with run_in_thread() as server:
        yield server


@pytest.fixture
def transports() -> Iterator[Callable[..., McpTransport]]:
    made: list[McpTransport] = []

    def make(server: HubServer, token: str | None, **kwargs: Any) -> McpTransport:
        t = McpTransport(f"{server.url}/mcp", agent_id=AGENT, auth_token=token, **kwargs)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def memory(instance: str, content: str) -> ExperienceEvent:
    return ExperienceEvent(
        source_instance=instance, event_type="memory", data=MemoryData(content=content)
    )


def events(instance: str, *contents: str) -> SyncRequest:
    return SyncRequest(
        "events",
        AGENT,
        EventsRequest(instance_id=instance, events=[memory(instance, c) for c in contents]),
        meta={"backlog": "3", "protocol": "streaming"},
    )


def hub_state(server: HubServer, token: str) -> dict[str, Any]:
    r = httpx.get(
        f"{server.url}/v1/agents/{AGENT}/state", headers={"Authorization": f"Bearer {token}"}
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def test_tool_call_merges_at_hub(hub: HubServer, transports: Callable[..., McpTransport]) -> None:
    token = hub.create_token(AGENT, "i1")
    t = transports(hub, token)
    result = t.send(events("i1", "The customer prefers email.", "Refunds take 5 days."), timeout=10)
    assert result.agent_id == AGENT
    assert result.events_received == 2
    assert result.memories_added == 2
    state = hub_state(hub, token)
    assert sorted(m["content"] for m in state["memories"]) == [
        "Refunds take 5 days.",
        "The customer prefers email.",
    ]
    assert all(m["source_instances"] == ["i1"] for m in state["memories"])
    # the hub recorded how the instance syncs
    instances = httpx.get(
        f"{hub.url}/v1/agents/{AGENT}/instances", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert instances[0]["transport"] == "mcp"
    assert instances[0]["protocol"] == "streaming"


def test_bare_hub_url_means_its_mcp_endpoint(hub: HubServer) -> None:
    t = McpTransport(hub.url, agent_id=AGENT, auth_token=hub.create_token(AGENT, "i1"))
    try:
        assert t.server == f"{hub.url}/mcp"
        assert t.send(events("i1", "Sent to the bare hub URL."), timeout=10).memories_added == 1
    finally:
        t.close()


def test_session_stays_open_across_calls(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"))
    for i in range(5):
        t.send(events("i1", f"memory number {i} about topic {i * 7}"), timeout=10)
    assert t.sessions_opened == 1


def test_get_state_tool(hub: HubServer, transports: Callable[..., McpTransport]) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"))
    first = t.send(events("i1", "The VPN needs a restart after updates."), timeout=10)
    state = t.fetch_state(timeout=10)
    assert [m.content for m in state.memories] == ["The VPN needs a restart after updates."]
    t.send(events("i1", "Printers on floor 3 jam on A3 paper."), timeout=10)
    changed = t.fetch_state(since=first.cursor, timeout=10)
    assert [m.content for m in changed.memories] == ["Printers on floor 3 jam on A3 paper."]
    # a read token may read but not write
    reader = transports(hub, hub.create_token(AGENT, "dashboard", scope="read"))
    assert len(reader.fetch_state(timeout=10).memories) == 2


def test_unauthenticated_is_refused(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    seen: list[ObservabilityEvent] = []

    class Observer:
        @staticmethod
        def experience_sync_observe(event: ObservabilityEvent) -> None:
            if event.type == "hub.rejected":
                seen.append(event)

    get_plugin_manager().register(Observer, name="observer")
    try:
        for token in (None, "xs_nope_nope", "not-a-token"):
            with pytest.raises(RejectedError) as info:
                transports(hub, token).send(events("i1", "hello there"), timeout=10)
            assert info.value.status_code == 401
    finally:
        get_plugin_manager().unregister(name="observer")
    assert {e.data["endpoint"] for e in seen} == {"mcp"}
    assert len(seen) == 3
    # plain HTTP gets the hub's JSON error body
    r = httpx.post(f"{hub.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 401
    assert r.json()["error"]["status"] == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    # nothing was merged
    assert hub_state(hub, hub.create_token(AGENT, "i1"))["memories"] == []


def test_token_binding_is_enforced(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"))
    cases = [
        events("i2", "instance mismatch"),  # unit from another instance
        SyncRequest(  # event whose source is another instance
            "events", AGENT, EventsRequest(instance_id="i1", events=[memory("i2", "sneaky")])
        ),
        SyncRequest(  # another agent
            "events", "other-agent", EventsRequest(instance_id="i1", events=[memory("i1", "x")])
        ),
    ]
    for request in cases:
        with pytest.raises(RejectedError) as info:
            t.send(request, timeout=10)
        assert info.value.status_code == 403, info.value
    reader = transports(hub, hub.create_token(AGENT, "i1", scope="read"))
    with pytest.raises(RejectedError) as info:
        reader.send(events("i1", "read tokens cannot write"), timeout=10)
    assert info.value.status_code == 403
    other = transports(hub, hub.create_token("other-agent", "i1"))
    with pytest.raises(RejectedError) as info:
        other.fetch_state(timeout=10)
    assert info.value.status_code == 403
    assert t.sessions_opened == 1  # refusals do not cost the session


def test_invalid_payload_is_rejected_with_422(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"))

    async def call(arguments: dict[str, Any]) -> Any:
        return await t_raw(hub, t, "sync_experiences", arguments)

    result = asyncio.run(
        call({"agent_id": AGENT, "kind": "events", "payload": {"instance_id": "i1"}})
    )
    assert result.isError
    assert result.content[0].text.count("[422]") == 1
    assert "events" in result.content[0].text


async def t_raw(hub: HubServer, t: McpTransport, tool: str, arguments: dict[str, Any]) -> Any:
    token = t._headers["Authorization"]
    async with (
        httpx.AsyncClient(headers={"Authorization": token}) as http,
        streamable_http_client(f"{hub.url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        if tool == "list":
            return await session.list_tools()
        return await session.call_tool(tool, arguments)


def test_body_limit_is_the_hubs(
    register_plugin: Callable[..., str], transports: Callable[..., McpTransport]
) -> None:
    from experience_sync.hub.web.app import HubLimits

    register_plugin(experience_sync_mcp.plugin, name="mcp")
    with run_in_thread(limits=HubLimits(max_body_bytes=20_000)) as hub:
        t = transports(hub, hub.create_token(AGENT, "i1"))
        assert t.send(events("i1", "small enough"), timeout=10).memories_added == 1
        with pytest.raises(RejectedError) as info:
            t.send(events("i1", *[f"memory {i} " + "x" * 500 for i in range(60)]), timeout=10)
        assert info.value.status_code == 413


def test_tools_are_listed_with_structured_output(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"))
    listed = asyncio.run(t_raw(hub, t, "list", {}))
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"sync_experiences", "get_state", "search_experiences", "get_source_agent"}
    assert tools["sync_experiences"].outputSchema is not None
    assert set(tools["sync_experiences"].inputSchema["required"]) == {"agent_id", "kind", "payload"}
    # payload may also be sent as JSON text, as a model-driven client would
    unit = EventsRequest(instance_id="i1", events=[memory("i1", "Sent as JSON text.")])
    result = asyncio.run(
        t_raw(
            hub,
            t,
            "sync_experiences",
            {"agent_id": AGENT, "kind": "events", "payload": unit.model_dump_json()},
        )
    )
    assert not result.isError
    assert result.structuredContent["memories_added"] == 1


def test_duplicates_have_no_effect(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    token = hub.create_token(AGENT, "i1")
    t = transports(hub, token)
    now = datetime.now(timezone.utc)
    batch = ExperienceBatch(
        instance_id="i1",
        timestamp_start=now,
        timestamp_end=now,
        events=[
            memory("i1", "Invoices are sent on the first working day."),
            memory("i1", "The staging database is reset every night."),
        ],
    )
    request = SyncRequest("batch", AGENT, batch)
    first = t.send(request, timeout=10)
    second = t.send(request, timeout=10)
    assert first.memories_added == 2 and not first.duplicate
    assert second.duplicate
    checkin = SyncRequest(
        "checkin", AGENT, CheckIn(instance_id="i1", events=[memory("i1", "Badges must be worn in the lab.")])
    )
    assert t.send(checkin, timeout=10).memories_added == 1
    assert t.send(checkin, timeout=10).duplicate
    again = events("i1", "Parking level B closes at 10 pm.")
    assert t.send(again, timeout=10).memories_added == 1
    repeat = t.send(again, timeout=10)
    assert repeat.memories_added == 0
    assert repeat.duplicate_event_ids == [again.payload.events[0].event_id]
    state = hub_state(hub, token)
    assert len(state["memories"]) == 4
    assert state["stats"]["total_events"] == 4


def test_reconnects_after_hub_restart(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"), connect_timeout=2.0)
    t.send(events("i1", "before the restart"), timeout=10)
    hub.stop()
    with pytest.raises(RetryableError):
        t.send(events("i1", "while the hub is down"), timeout=1)
    hub.start()  # same port, same store
    result = t.send(events("i1", "after the restart"), timeout=10)
    assert result.memories_added == 1
    assert t.sessions_opened == 2


def test_send_retries_until_the_hub_is_back(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    t = transports(hub, hub.create_token(AGENT, "i1"), connect_timeout=2.0)
    retries: list[tuple[int, str]] = []
    t.on_retry = lambda attempt, delay, reason, status: retries.append((attempt, reason))
    t.send(events("i1", "first contact"), timeout=10)
    hub.stop()
    restarter = threading.Timer(0.5, hub.start)
    restarter.start()
    try:
        result = t.send(events("i1", "delivered once the hub is back"), timeout=20)
    finally:
        restarter.join()
    assert result.memories_added == 1
    assert retries, "the outage should have cost at least one retry"
    assert retries[0][0] == 1


def test_unreachable_hub_is_retryable(transports: Callable[..., McpTransport]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = McpTransport(f"http://127.0.0.1:{port}/mcp", agent_id=AGENT, connect_timeout=2.0)
    try:
        with pytest.raises(RetryableError):
            t.send(events("i1", "nobody home"), timeout=1)
    finally:
        t.close()
    with pytest.raises(RetryableError):  # closed: the unit stays queued for the next run
        t.send(events("i1", "closed"), timeout=30)  # at once, not after 30 s


def test_wrong_url_or_tool_is_a_404(
    hub: HubServer, transports: Callable[..., McpTransport]
) -> None:
    token = hub.create_token(AGENT, "i1")
    with pytest.raises(RejectedError) as info:
        transports(hub, token, connect_timeout=2.0, tool_name="no_such_tool").send(
            events("i1", "wrong tool"), timeout=5
        )
    assert info.value.status_code == 404
    wrong = McpTransport(f"{hub.url}/v1/mcp", agent_id=AGENT, auth_token=token)
    try:
        with pytest.raises(RejectedError) as info:
            wrong.send(events("i1", "wrong path"), timeout=5)
        assert info.value.status_code == 404
    finally:
        wrong.close()


def test_hook_registers_the_transport(register_plugin: Callable[..., str]) -> None:
    register_plugin(experience_sync_mcp.plugin, name="mcp")
    registry = get_plugin_manager().registry
    assert "mcp" in registry.names("transports")
    config = load_config(
        cwd="/nonexistent",
        environ={},
        transport={
            "type": "mcp",
            "mcp": {"server": "http://127.0.0.1:9/mcp", "tool_name": "sync_experiences",
                    "auth_token": "xs_a_b"},
        },
    )
    t = registry.create("transports", "mcp", config, AGENT)
    try:
        assert isinstance(t, McpTransport)
        assert t.server == "http://127.0.0.1:9/mcp"
        assert t._headers["Authorization"] == "Bearer xs_a_b"
    finally:
        t.close()
    with pytest.raises(ConfigError):
        registry.create("transports", "mcp", load_config(cwd="/nonexistent", environ={}), AGENT)
    # the plugin's own table validates at load, naming the field
    with pytest.raises(ConfigError) as info:
        load_config(cwd="/nonexistent", environ={},
                    transport={"mcp": {"server": "http://mcp.example.com/mcp"}})
    assert [path for path, _ in info.value.errors] == ["transport.mcp.server"]
    assert "plain http:// to non-loopback host" in str(info.value)


def test_endpoint_runs_in_the_app_lifespan_when_the_server_runs_one(
    register_plugin: Callable[..., str], tmp_path: Any, transports: Callable[..., McpTransport]
) -> None:
    import socket

    import uvicorn

    from experience_sync.hub.web.app import Hub, create_app
    from experience_sync.hub.web.auth import create_token

    register_plugin(experience_sync_mcp.plugin, name="mcp")
    hub = Hub.open(f"sqlite:///{tmp_path / 'hub.db'}")
    token, _ = create_token(hub.store, AGENT, "i1")
    for _ in range(2):  # the SDK's session manager runs once: a second run needs a new one
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = create_app(hub)
        endpoint = next(r.app for r in app.router.routes if getattr(r, "path", "") == "/mcp")
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            while not server.started:
                assert thread.is_alive()
                thread.join(0.01)
            t = McpTransport(f"http://127.0.0.1:{port}/mcp", agent_id=AGENT, auth_token=token)
            try:
                assert t.send(events("i1", f"served in lifespan {port}"), timeout=10).events_received
            finally:
                t.close()
            assert isinstance(endpoint, McpEndpoint)
            assert endpoint._lazy_task is None  # started by the lifespan, not by the request
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()
    hub.close()


def test_concurrent_instances(hub: HubServer, transports: Callable[..., McpTransport]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def instance(n: int) -> int:
        t = transports(hub, hub.create_token(AGENT, f"i{n}"))
        return sum(
            t.send(events(f"i{n}", f"{uuid.uuid4().hex} {uuid.uuid4().hex}"),
                   timeout=20).memories_added
            for k in range(10)
        )

    with ThreadPoolExecutor(4) as pool:
        added = list(pool.map(instance, range(4)))
    assert added == [10, 10, 10, 10]
    state = hub_state(hub, hub.create_token(AGENT, "reader", scope="read"))
    assert len(state["memories"]) == 40
