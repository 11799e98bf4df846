"""Consulting the source agent over MCP: ``search_experiences`` and ``get_source_agent``.

A real hub on loopback with the MCP plugin, learning from several instances
over its HTTP API; the official SDK's client calls the tools.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import experience_sync_mcp.plugin
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from experience_sync.api import ExperienceEvent, SearchResults, render_hits
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.plugins import registered_plugin

AGENT = "support-agent"
LESSONS = [
    "The payments API is down every Sunday night for maintenance",
    "Retry a failed payment once, then ask the user for another card",
    "The user prefers short answers without bullet points",
]
REFUND = {"content": "Refunds take five business days", "subject": "refund delay",
          "confidence": 0.95}
RUMOUR = {"content": "Invoices may move to weekly billing", "subject": "invoice cadence",
          "confidence": 0.9}


def ev(instance: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    event = ExperienceEvent.model_validate(
        {"source_instance": instance, "event_type": kind, "data": data}
    )
    return event.model_dump(mode="json")


def post(hub: HubServer, instance: str, *events: dict[str, Any]) -> None:
    token = hub.create_token(AGENT, instance)
    r = httpx.post(
        f"{hub.url}/v1/agents/{AGENT}/events",
        json={"instance_id": instance, "events": list(events)},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    """A hub that learned memories, a verified and a pending fact, skills, a characteristic."""
    with registered_plugin(experience_sync_mcp.plugin, name="mcp"), run_in_thread() as server:
        post(server, "i1", *[ev("i1", "memory", {"content": c}) for c in LESSONS],
             ev("i1", "knowledge", REFUND), ev("i1", "knowledge", RUMOUR),
             ev("i1", "skill", {"name": "web_search", "proficiency": 0.8,
                                "usage": {"invocations": 20, "successes": 18}}),
             ev("i1", "skill", {"name": "payments_api", "proficiency": 0.6,
                                "usage": {"invocations": 4, "successes": 3}}),
             ev("i1", "characteristic", {"key": "tone", "value": "friendly"}))
        for i in ("i2", "i3", "i4"):  # enough instances verify the refund fact
            post(server, i, ev(i, "knowledge", REFUND),
                 ev(i, "skill", {"name": "web_search",
                                 "usage": {"invocations": 5, "successes": 5}}))
        yield server


def call(hub: HubServer, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async def run() -> Any:
        async with (
            httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(f"{hub.url}/mcp", http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            if tool == "list":
                return await session.list_tools()
            return await session.call_tool(tool, arguments)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def read_token(hub: HubServer) -> str:
    return hub.create_token(AGENT, "dashboard", scope="read")


def assert_422(result: Any, field: str) -> None:
    """A tool error ``[422] <field>: <reason>`` (the SDK puts its own words before it)."""
    assert result.isError, result.structuredContent
    text = result.content[0].text
    assert re.search(rf"\[422\] {re.escape(field)}:? \S", text), text


def search(hub: HubServer, token: str, **arguments: Any) -> Any:
    return call(hub, token, "search_experiences", {"agent_id": AGENT, **arguments})


def test_the_tools_are_listed_with_their_schemas(hub: HubServer, read_token: str) -> None:
    tools = {t.name: t for t in call(hub, read_token, "list", {}).tools}
    assert {"search_experiences", "get_source_agent"} <= set(tools)
    schema = tools["search_experiences"].inputSchema
    assert set(schema["required"]) == {"agent_id", "q"}
    assert schema["properties"]["k"]["maximum"] == 100
    assert schema["properties"]["knowledge_status"]["enum"] == ["integrated", "pending", "all"]
    assert tools["search_experiences"].outputSchema is not None
    assert "hits" in tools["search_experiences"].outputSchema["properties"]
    out = tools["get_source_agent"].outputSchema
    assert out is not None and {"counts", "knowledge", "skills"} <= set(out["properties"])
    assert tools["get_source_agent"].inputSchema["required"] == ["agent_id"]


def test_search_answers_what_the_http_route_answers(hub: HubServer, read_token: str) -> None:
    result = search(hub, read_token, q="is the payment api down on sunday", k=3)
    assert not result.isError, result.content
    results = SearchResults.model_validate(result.structuredContent)
    assert results.hits[0].text == LESSONS[0]
    route = httpx.get(
        f"{hub.url}/v1/agents/{AGENT}/search",
        params={"q": "is the payment api down on sunday", "k": 3},
        headers={"Authorization": f"Bearer {read_token}"},
    ).json()
    assert [(h.kind, h.id) for h in results.hits] == [(h["kind"], h["id"]) for h in route["hits"]]
    # the text block is the hits' own words, as render_hits puts them in a prompt
    (text,) = result.content
    assert text.text == render_hits(results.hits, max_chars=100_000)
    assert LESSONS[0] in text.text
    assert all(h.id not in text.text for h in results.hits)


def test_search_filters_like_the_route(hub: HubServer, read_token: str) -> None:
    def hits(**arguments: Any) -> list[tuple[str, str]]:
        result = search(hub, read_token, **arguments)
        assert not result.isError, result.content
        return [(h["kind"], h["text"]) for h in result.structuredContent["hits"]]

    assert hits(q="refund delay") == [
        ("knowledge", "refund delay: Refunds take five business days")]
    # pending knowledge only when asked
    assert hits(q="invoice cadence") == []
    assert hits(q="invoice cadence", knowledge_status="pending") == [
        ("knowledge", "invoice cadence: Invoices may move to weekly billing")]
    assert ("knowledge", "refund delay: Refunds take five business days") not in hits(
        q="refund delay invoice cadence", knowledge_status="pending")
    assert len(hits(q="refund delay invoice cadence", knowledge_status="all")) == 2
    # kinds as a list or as comma-separated text
    assert {k for k, _ in hits(q="payments", kinds=["skill"])} == {"skill"}
    assert hits(q="payments", kinds="memory,skill") == hits(q="payments", kinds=["memory", "skill"])
    assert hits(q="payments", tags=["nothing-has-this"]) == []
    # a skill hit's text block line is its reliability across the fleet
    result = search(hub, read_token, q="web search", kinds=["skill"])
    assert "web_search: succeeded in 94% of 35 uses across the fleet" in result.content[0].text
    assert "Nothing the source agent learned matches" in search(
        hub, read_token, q="zebra xylophone").content[0].text


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"q": "   "}, "q"),
        ({"q": "x" * 2001}, "q"),
        ({"q": "payments", "k": 0}, "k"),
        ({"q": "payments", "k": "many"}, "k"),
        ({"q": "payments", "kinds": ["memory", "pets"]}, "kinds.1"),
        ({"q": "payments", "kinds": []}, "kinds"),
        ({"q": "payments", "min_confidence": 2}, "min_confidence"),
        ({"q": "payments", "knowledge_status": "verified"}, "knowledge_status"),
        ({"q": "payments", "tags": [1, 2]}, "tags.0"),
    ],
)
def test_bad_search_arguments_are_a_422_naming_the_field(
    hub: HubServer, read_token: str, arguments: dict[str, Any], field: str
) -> None:
    result = search(hub, read_token, **arguments)
    assert result.isError
    assert_422(result, field)


def test_source_agent_summary(hub: HubServer, read_token: str) -> None:
    result = call(hub, read_token, "get_source_agent", {"agent_id": AGENT})
    assert not result.isError, result.content
    s = result.structuredContent
    assert s["agent_id"] == AGENT and s["cursor"] > 0
    assert s["counts"] == {"memories": 3, "skills": 2, "knowledge_integrated": 1,
                           "knowledge_pending": 1, "characteristics": 1, "open_reviews": 0,
                           "instances": 4}
    # only integrated knowledge is listed; pending is counted
    assert [k["text"] for k in s["knowledge"]] == ["refund delay: Refunds take five business days"]
    assert s["knowledge"][0]["verifications"] == 4
    # skills most used first, each with its reliability line
    assert [k["name"] for k in s["skills"]] == ["web_search", "payments_api"]
    assert s["skills"][0]["reliability"] == "web_search: succeeded in 94% of 35 uses across the fleet"
    assert s["skills"][1]["reliability"] == "payments_api: succeeded in 75% of 4 uses across the fleet"
    assert s["characteristics"] == {"tone": "friendly"}
    assert s["state"] is None
    text = result.content[0].text
    assert text.startswith(f"Source agent {AGENT}: 3 memories, 2 skills, 1 integrated knowledge")
    for line in ("- refund delay: Refunds take five business days",
                 "- web_search: succeeded in 94% of 35 uses across the fleet", "- tone: friendly"):
        assert line in text.splitlines()
    assert "Invoices may move" not in text


def test_source_agent_options(hub: HubServer, read_token: str) -> None:
    result = call(hub, read_token, "get_source_agent",
                  {"agent_id": AGENT, "full": True, "top_skills": 1, "max_knowledge": 0})
    assert not result.isError, result.content
    s = result.structuredContent
    assert [k["name"] for k in s["skills"]] == ["web_search"]
    assert s["knowledge"] == []
    assert len(s["state"]["memories"]) == 3 and len(s["state"]["knowledge"]) == 2
    bad_values: list[tuple[str, Any]] = [("top_skills", -1), ("max_knowledge", 501),
                                         ("full", "perhaps")]
    for field, value in bad_values:
        bad = call(hub, read_token, "get_source_agent", {"agent_id": AGENT, field: value})
        assert_422(bad, field)


def test_an_unknown_agent_is_empty_not_an_error(hub: HubServer) -> None:
    token_agent = "nobody-yet"
    token = hub.create_token(token_agent, "viewer", scope="read")
    result = call(hub, token, "get_source_agent", {"agent_id": token_agent})
    assert not result.isError, result.content
    assert result.structuredContent["counts"]["memories"] == 0
    hits = call(hub, token, "search_experiences", {"agent_id": token_agent, "q": "payments"})
    assert not hits.isError and hits.structuredContent["hits"] == []


@pytest.mark.parametrize("tool", ["search_experiences", "get_source_agent"])
def test_tokens_of_the_agent_only(hub: HubServer, tool: str) -> None:
    arguments: dict[str, Any] = {"agent_id": AGENT, "q": "payments"}
    if tool == "get_source_agent":
        del arguments["q"]
    # a write token of the agent may consult it too
    assert not call(hub, hub.create_token(AGENT, "i1"), tool, arguments).isError
    other = call(hub, hub.create_token("other-agent", "i1", scope="read"), tool, arguments)
    assert other.isError and "[403] token is for agent 'other-agent'" in other.content[0].text
    assert_422(call(hub, hub.create_token(AGENT, "i1"), tool, {**arguments, "agent_id": ""}),
               "agent_id")


def test_no_token_is_a_401(hub: HubServer) -> None:
    r = httpx.post(f"{hub.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401


def test_a_no_auth_hub_answers_any_agent(register_plugin: Callable[..., str]) -> None:
    register_plugin(experience_sync_mcp.plugin, name="mcp")
    with run_in_thread(auth=False) as server:
        post_plain = httpx.post(
            f"{server.url}/v1/agents/{AGENT}/events",
            json={"instance_id": "i1", "events": [ev("i1", "memory", {"content": LESSONS[1]})]},
        )
        assert post_plain.status_code == 200
        result = call(server, "anything", "search_experiences",
                      {"agent_id": AGENT, "q": "failed payment retry"})
        assert not result.isError, result.content
        assert result.structuredContent["hits"][0]["text"] == LESSONS[1]
