"""Ids and keys a store keeps as they are: no NUL character, and agent ids within 200 characters.

PostgreSQL text cannot hold NUL; a hub answers such a unit with a 422 naming
the field on any store, before anything is merged. Free text (a memory's
content, tags, a skill's name) may hold it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hub_helpers import auth, memory_event

from experience_sync.hub.web.server import HubServer


def _events(hub: HubServer, agent: str, body: Any, token: str | None = None) -> httpx.Response:
    headers = auth(token) if token else {}
    return httpx.post(f"{hub.url}/v1/agents/{agent}/events", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("instance", "instance_id"),
        ("event_id", "events.0.event_id"),
        ("source", "events.0.source_instance"),
        ("memory_id", "events.0.data.memory_id"),
        ("characteristic", "events.0.data.key"),
    ],
)
def test_a_nul_in_an_id_is_a_422_naming_the_field(make_hub: Any, where: str, field: str) -> None:
    hub = make_hub(auth=False)
    event = memory_event("i1")
    instance = "i1"
    if where == "instance":
        instance = "i\x001"
    elif where == "event_id":
        event["event_id"] = "e\x001"
    elif where == "source":
        event["source_instance"] = "i\x001"
    elif where == "memory_id":
        event["data"]["memory_id"] = "m\x001"
    else:
        event["event_type"] = "characteristic"
        event["data"] = {"key": "tone\x00", "value": "warm"}
    r = _events(hub, "a1", {"instance_id": instance, "events": [event]})
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert details[0]["loc"] == field and "NUL" in details[0]["msg"], details
    assert hub.engine.state("a1").memories == []


def test_free_text_may_hold_a_nul(make_hub: Any) -> None:
    hub = make_hub(auth=False)
    event = memory_event("i1")
    event["data"]["content"] = "the export\x00 runs nightly"
    event["data"]["tags"] = ["ops\x00"]
    r = _events(hub, "a1", {"instance_id": "i1", "events": [event]})
    assert r.status_code == 200, r.text
    (memory,) = hub.engine.state("a1").memories
    assert memory.content == "the export\x00 runs nightly"


@pytest.mark.parametrize("agent", ["a%00b", "x" * 201])
def test_an_agent_path_no_store_holds_is_a_422(make_hub: Any, agent: str) -> None:
    for auth_on in (False, True):
        hub = make_hub(auth=auth_on)
        token = hub.create_token("a1", "i1") if auth_on else None
        body = {"instance_id": "i1", "events": [memory_event("i1")]}
        r = _events(hub, agent, body, token)
        assert r.status_code == 422, r.text
        assert "agent_id must be 1 to 200 characters" in r.json()["error"]["message"]
        headers = auth(token) if token else {}
        read = httpx.get(f"{hub.url}/v1/agents/{agent}/state", headers=headers, timeout=30)
        assert read.status_code == 422, read.text
