"""The WebSocket endpoint against a real hub: pipelining, duplicates, bad frames, query tokens."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from hub_helpers import auth, batch_body, events_body

from experience_sync.hub.web.server import HubServer


def _connect(hub: HubServer, token: str, agent: str = "a1") -> Any:
    return ws_client.connect(
        f"{hub.ws_url}/v1/agents/{agent}/ws", additional_headers=auth(token), compression=None
    )


def test_pipelined_frames_are_each_acked_with_their_id(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    frames = [
        {"id": f"f{i}", "kind": "events", "payload": events_body("i1", 5), "meta": {"backlog": 20 - i}}
        for i in range(20)
    ]
    with _connect(hub, token) as ws:
        for frame in frames:
            ws.send(json.dumps(frame))
        acks = [json.loads(ws.recv(timeout=30)) for _ in frames]
    assert [a["id"] for a in acks] == [f["id"] for f in frames]
    assert all(a["ok"] for a in acks), acks
    assert sum(a["result"]["memories_added"] for a in acks) == 100
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 100
    [inst] = httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json()
    assert inst["transport"] == "websocket"
    assert inst["backlog"] == 1


def test_duplicates_over_websocket_change_nothing(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    batch = batch_body("i1", 3)
    events = events_body("i1", 2)
    with _connect(hub, token) as ws:
        for i in range(2):
            ws.send(json.dumps({"id": f"b{i}", "kind": "batch", "payload": batch}))
            ws.send(json.dumps({"id": f"e{i}", "kind": "events", "payload": events}))
        acks = {a["id"]: a for a in (json.loads(ws.recv(timeout=30)) for _ in range(4))}
    assert acks["b0"]["result"]["duplicate"] is False
    assert acks["b1"]["result"]["duplicate"] is True
    assert acks["e1"]["result"]["memories_added"] == 0
    assert len(acks["e1"]["result"]["duplicate_event_ids"]) == 2
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 5


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        ("not json", 400),
        ("[1, 2]", 400),
        (json.dumps({"id": 1, "kind": "nap", "payload": {}}), 422),
        (json.dumps({"id": 2, "kind": "events", "payload": {"instance_id": "i1"}}), 422),
        (json.dumps({"id": 3, "kind": "events", "payload": "x"}), 422),
        (json.dumps({"id": 4, "kind": "events", "payload": events_body("i1"), "meta": 5}), 422),
        (json.dumps({"id": 5, "kind": "events", "payload": events_body("i2")}), 403),
    ],
)
def test_bad_frames_get_error_acks_and_the_connection_survives(
    hub: HubServer, frame: str, status: int
) -> None:
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(frame)
        ack = json.loads(ws.recv(timeout=30))
        assert ack["ok"] is False
        assert ack["error"]["status"] == status
        # still usable
        ws.send(json.dumps({"id": "ok", "kind": "events", "payload": events_body("i1")}))
        assert json.loads(ws.recv(timeout=30)) ["ok"] is True


def test_validation_error_ack_names_the_field(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    payload = events_body("i1")
    del payload["events"][0]["data"]["content"]
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": "x", "kind": "events", "payload": payload}))
        ack = json.loads(ws.recv(timeout=30))
    assert ack["id"] == "x"
    assert "events.0.data.content" in [d["loc"] for d in ack["error"]["details"]]


def test_binary_frames_are_answered_in_binary(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": 7, "kind": "events", "payload": events_body("i1")}).encode())
        ack = ws.recv(timeout=30)
    assert isinstance(ack, bytes)
    assert json.loads(ack)["id"] == 7


def test_token_in_query_string_is_accepted(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    with ws_client.connect(f"{hub.ws_url}/v1/agents/a1/ws?access_token={token}") as ws:
        ws.send(json.dumps({"id": 1, "kind": "checkin", "payload": {"instance_id": "i1"}}))
        assert json.loads(ws.recv(timeout=30))["ok"] is True


def test_query_tokens_are_redacted_from_logs() -> None:
    import logging

    from experience_sync.hub.web.server import TokenRedactingFilter

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "WebSocket %s" %d',
        ("127.0.0.1:1", "/v1/agents/a1/ws?access_token=xs_abc_SECRET&x=1", 101), None,
    )
    TokenRedactingFilter().filter(record)
    message = record.getMessage()
    assert "SECRET" not in message
    # The WebSocket route takes a token in its query: none of it is logged.
    assert "/v1/agents/a1/ws?[query not logged]" in message


def test_clients_reconnect_after_a_restart(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": 1, "kind": "events", "payload": events_body("i1")}))
        assert json.loads(ws.recv(timeout=30))["ok"]
    hub.restart()
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": 2, "kind": "events", "payload": events_body("i1")}))
        assert json.loads(ws.recv(timeout=30))["ok"]


def test_oversized_frame_closes_the_connection_with_1009(make_hub: Any) -> None:
    from websockets.exceptions import ConnectionClosedError

    from experience_sync.hub.web.app import HubLimits

    hub = make_hub(limits=HubLimits(max_body_bytes=20_000))
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": 1, "kind": "events", "payload": events_body("i1", 200)}))
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_a_revoked_token_stops_an_open_websocket(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from websockets.exceptions import ConnectionClosed

    import experience_sync.hub.web.app as hub_app

    token = hub.create_token("a1", "i1")
    token_id = token.split("_")[1]
    monkeypatch.setattr(hub_app, "WS_REAUTH_SECONDS", 0.0)
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": "f0", "kind": "events", "payload": events_body("i1", 1)}))
        assert json.loads(ws.recv(timeout=30))["ok"] is True
        assert hub.hub.store.revoke_token(token_id)
        ws.send(json.dumps({"id": "f1", "kind": "events", "payload": events_body("i1", 1)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    # The frame sent after revocation was not merged.
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(hub.create_token("a1", "i2", "read"))).json()
    assert page["total"] == 1


@pytest.mark.parametrize("backlog", [-1, 2**63, 1.5, True, "x", "-3", [], {}])
def test_bad_meta_backlog_is_a_422_ack_naming_it(hub: HubServer, backlog: Any) -> None:
    token = hub.create_token("a1", "i1")
    frame = {"id": "f1", "kind": "events", "payload": events_body("i1"), "meta": {"backlog": backlog}}
    with _connect(hub, token) as ws:
        ws.send(json.dumps(frame))
        ack = json.loads(ws.recv(timeout=30))
    assert ack["ok"] is False and ack["error"]["status"] == 422, ack
    assert [d["loc"] for d in ack["error"]["details"]] == ["meta.backlog"]
    # nothing merged, nothing recorded about the instance
    assert httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json() == []


def test_meta_backlog_as_a_decimal_string_is_recorded(hub: HubServer) -> None:
    # Instances send meta as header values: the string form counts like the integer.
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        for i, backlog in enumerate((2**63 - 1, "12")):
            ws.send(json.dumps({"id": i, "kind": "events", "payload": events_body("i1"), "meta": {"backlog": backlog}}))
            assert json.loads(ws.recv(timeout=30))["ok"] is True
            [inst] = httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json()
            assert inst["backlog"] == (2**63 - 1 if i == 0 else 12)
