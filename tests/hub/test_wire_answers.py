"""Bad input a client author would try from docs/wire-protocol.md, through a real hub.

Each answer is the documented one: field caps are 422s naming the field by
its dotted path, a non-JSON body type is 415, a malformed transport name is
400, an unknown frame key is a 422 ack, and every timestamp comes back UTC
with ``Z`` whatever offset the sender used.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
import websockets.sync.client as ws_client
from hub_helpers import events_body, memory_event

from experience_sync.hub.web.server import HubServer
from experience_sync.models import (
    MAX_EMBEDDING,
    MAX_FREE_JSON_BYTES,
    MAX_LABEL_TEXT,
    MAX_TAGS,
    MemoryData,
)

BIG = "x" * (MAX_FREE_JSON_BYTES + 1)


def _post(hub: HubServer, token: str, body: Any, path: str = "events",
          **headers: str) -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/agents/a1/{path}", content=orjson.dumps(body),
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json", **headers})


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error: dict[str, Any] = r.json()["error"]
    assert error["status"] == status
    return error


@pytest.mark.parametrize(
    ("event_type", "data", "loc"),
    [
        ("memory", {"content": "c", "tags": ["t" * (MAX_LABEL_TEXT + 1)]}, "events.0.data.tags.0"),
        ("memory", {"content": "c", "tags": ["t"] * (MAX_TAGS + 1)}, "events.0.data.tags"),
        ("memory", {"content": "c", "memory_type": "m" * 10_000}, "events.0.data.memory_type"),
        ("memory", {"content": "c", "embedding": [0.0] * (MAX_EMBEDDING + 1)}, "events.0.data.embedding"),
        ("characteristic", {"key": "tone", "value": BIG}, "events.0.data.value"),
        ("characteristic", {"key": "tone", "value": {"nested": [BIG]}}, "events.0.data.value"),
        ("interaction", {"summary": "s", "transcript": BIG}, "events.0.data.transcript"),
        ("interaction", {f"f{i}": "x" * 2000 for i in range(60)}, "events.0.data"),
        ("interaction", {"outcome": "o" * 10_000}, "events.0.data.outcome"),
        ("knowledge", {"content": "c", "subject": "s" * 10_000}, "events.0.data.subject"),
        ("skill", {"name": "n", "usage": {"contexts": ["c" * 10_000]}}, "events.0.data.usage.contexts.0"),
        ("memory", None, "events.0.data"),
    ],
)
def test_a_field_over_its_cap_is_422_at_its_dotted_path(
    hub: HubServer, event_type: str, data: Any, loc: str
) -> None:
    token = hub.create_token("a1", "i1")
    event = memory_event("i1", event_type=event_type, data=data)
    error = _error(_post(hub, token, {"instance_id": "i1", "events": [event]}), 422)
    assert [d["loc"] for d in error["details"]] == [loc], error


def test_context_and_checkin_caps_name_their_fields(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    event = memory_event("i1", context={"trigger": "t" * 10_000, "environment": {"log": BIG}})
    error = _error(_post(hub, token, {"instance_id": "i1", "events": [event]}), 422)
    assert {d["loc"] for d in error["details"]} == {"events.0.context.trigger",
                                                   "events.0.context.environment.log"}
    checkin = {"instance_id": "i1", "state": {"characteristics": {"": 1, "tone": BIG}}}
    error = _error(_post(hub, token, checkin, "checkins"), 422)
    locs = [d["loc"] for d in error["details"]]
    assert locs == ["state.characteristics", "state.characteristics.tone"], error
    assert all(".." not in loc and "[key]" not in loc for loc in locs)


def test_the_client_models_refuse_what_the_hub_refuses() -> None:
    with pytest.raises(ValueError, match="at most 200 characters"):
        MemoryData(content="c", tags=["t" * (MAX_LABEL_TEXT + 1)])


def test_a_body_over_the_request_cap_is_413(make_hub: Any) -> None:
    from experience_sync.hub.web.app import HubLimits

    hub = make_hub(limits=HubLimits(max_body_bytes=50_000))
    token = hub.create_token("a1", "i1")
    body = {"instance_id": "i1", "events": [memory_event("i1", "c" * 60_000)]}
    _error(_post(hub, token, body), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_declared_json_is_415(hub: HubServer, content_type: str) -> None:
    token = hub.create_token("a1", "i1")
    for path in ("events", "batches", "checkins", "search", "reviews/rv-1"):
        r = _post(hub, token, events_body("i1"), path, **{"Content-Type": content_type})
        assert "Content-Type" in _error(r, 415)["message"]
    assert _post(hub, token, events_body("i1"),
                 **{"Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_a_transport_name_must_be_a_name(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    for bad in ("", "web socket", "https/2", "<script>"):
        r = _post(hub, token, events_body("i1"), **{"X-Experience-Sync-Transport": bad})
        assert "X-Experience-Sync-Transport" in _error(r, 400)["message"], bad
    r = _post(hub, token, events_body("i1"), **{"X-Experience-Sync-Transport": "carrier-pigeon.v2"})
    assert r.status_code == 200
    instances = httpx.get(f"{hub.url}/v1/agents/a1/instances",
                          headers={"Authorization": f"Bearer {token}"}).json()
    assert instances[0]["transport"] == "carrier-pigeon.v2"


def test_an_unknown_frame_key_is_a_422_ack_and_nothing_is_merged(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    auth = {"Authorization": f"Bearer {token}"}
    with ws_client.connect(f"{hub.ws_url}/v1/agents/a1/ws", additional_headers=auth) as ws:
        ws.send(orjson.dumps({"id": 7, "kind": "events", "payload": events_body("i1"),
                              "metadata": {"backlog": 3}}).decode())
        ack = orjson.loads(ws.recv(timeout=30))
        assert ack["id"] == 7 and ack["ok"] is False
        assert ack["error"]["status"] == 422
        assert [d["loc"] for d in ack["error"]["details"]] == ["metadata"]
        ws.send(orjson.dumps({"id": 8, "kind": "events", "payload": events_body("i1")}).decode())
        assert orjson.loads(ws.recv(timeout=30))["ok"] is True
    state = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth).json()
    assert len(state["memories"]) == 1


_OFFSET = re.compile(r'"\d{4}-\d\d-\d\dT[0-9:.]+([+-]\d\d:\d\d)"')


def test_every_timestamp_on_the_wire_is_utc_with_z(make_hub: Any) -> None:
    from experience_sync.config import MergeStrategyConfig

    hub = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"))
    token = hub.create_token("a1", "i1")
    auth = {"Authorization": f"Bearer {token}"}
    # The sender writes its own offset; a conflict queues a review.
    first = memory_event("i1", event_type="characteristic", timestamp="2026-11-25T08:00:00+02:00",
                         data={"key": "tone", "value": "formal"})
    second = memory_event("i1", event_type="characteristic", timestamp="2026-11-25T09:00:00+02:00",
                          data={"key": "tone", "value": "casual"})
    mem = memory_event("i1", "offset memory", timestamp="2026-11-25T01:00:00-05:00")
    for event in (first, second, mem):
        assert _post(hub, token, {"instance_id": "i1", "events": [event]}).status_code == 200
    with httpx.stream("GET", f"{hub.url}/v1/events", headers=auth, timeout=10) as stream:
        lines = stream.iter_lines()
        next(lines)  # the opening comment: subscribed
        third = memory_event("i1", event_type="characteristic", timestamp="2026-11-25T10:00:00+02:00",
                             data={"key": "tone", "value": "terse"})
        assert _post(hub, token, {"instance_id": "i1", "events": [third]}).status_code == 200
        events = []
        for line in lines:
            if line.startswith("data: "):
                events.append(line)
            if any("review.queued" in e for e in events):
                break
    answers = {
        "state": httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth).text,
        "reviews": httpx.get(f"{hub.url}/v1/agents/a1/reviews", headers=auth).text,
        "memories": httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth).text,
        "instances": httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth).text,
        "events": "\n".join(events),
    }
    reviews = orjson.loads(answers["reviews"])
    assert reviews, "manual_review queued no review"
    assert reviews[0]["proposed"]["timestamp"].endswith("Z"), reviews[0]
    for name, text in answers.items():
        assert not _OFFSET.findall(text), (name, _OFFSET.findall(text)[:3])
    memory = next(m for m in orjson.loads(answers["memories"])["items"]
                  if m["content"] == "offset memory")
    assert memory["created_at"] == "2026-11-25T06:00:00Z"
