"""Faults that are not the request's, through a real hub on loopback.

A client that hangs up mid-body, a store with no room left and a WebSocket
frame that is not UTF-8 each get a documented answer and one log line: no
traceback, and no 500 in ``/metrics``.
"""

from __future__ import annotations

import logging
import socket
import time

import httpx
import orjson
import pytest
import websockets.exceptions
import websockets.sync.client as ws_client
from hub_helpers import events_body

from experience_sync.hub.web.server import HubServer


def _metric_lines(hub: HubServer, token: str, name: str) -> list[str]:
    r = httpx.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    return [line for line in r.text.splitlines() if line.startswith(name + "{")]


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


def test_a_client_that_hangs_up_mid_body_is_counted_499_not_500(
    hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = hub.create_token("a1", "i1")
    caplog.set_level(logging.INFO)
    head = (
        "POST /v1/agents/a1/events HTTP/1.1\r\n"
        f"Host: {hub.host}:{hub.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection((hub.host, hub.port)) as sock:
        sock.sendall(head + b'{"instance_id": "i1", "events": [')
        time.sleep(0.2)  # the hub is reading the body
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in _metric_lines(hub, token, "experience_sync_hub_requests_total")
                 if 'endpoint="events"' in ln]
        if lines:
            break
        time.sleep(0.05)
    assert any('status="499"' in ln for ln in lines), lines
    assert not any('status="500"' in ln for ln in lines), lines
    assert not _tracebacks(caplog)
    said = [r.getMessage() for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(said) == 1, said
    # The hub goes on serving.
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"),
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


def test_a_full_store_is_a_503_with_retry_after_and_nothing_half_applied(
    hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = hub.create_token("a1", "i1")
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{hub.url}/v1/agents/a1/events"
    assert httpx.post(url, json=events_body("i1", 2), headers=auth).status_code == 200
    before = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth).json()
    # SQLite answers SQLITE_FULL at max_page_count exactly as on a full disk;
    # the limit is per connection, so it is set on the store's own.
    db = hub.hub.store._db  # type: ignore[attr-defined]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    body = events_body("i1", 200, prefix="w" * 2000)
    try:
        r = httpx.post(url, json=body, headers=auth)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["retry-after"]) >= 1
        err = r.json()["error"]
        assert err["status"] == 503 and "full" in err["message"]
        after = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth).json()
        assert after == before
        # The WebSocket answers a frame with the same 503 ack.
        with ws_client.connect(f"{hub.ws_url}/v1/agents/a1/ws",
                               additional_headers=auth) as ws:
            ws.send(orjson.dumps({"id": 1, "kind": "events", "payload": body}).decode())
            ack = orjson.loads(ws.recv(timeout=30))
        assert ack["ok"] is False and ack["error"]["status"] == 503, ack
    finally:
        db.execute("PRAGMA max_page_count=1073741823")
    assert not _tracebacks(caplog)
    lines = _metric_lines(hub, token, "experience_sync_hub_requests_total")
    assert not any('status="500"' in ln for ln in lines), lines
    # Room again: the same unit is merged whole, once.
    r = httpx.post(url, json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["memories_added"] + r.json()["memories_merged"] == 200
    state = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth).json()
    assert state["stats"]["total_events"] == before["stats"]["total_events"] + 200


def test_invalid_utf8_in_a_websocket_frame_is_one_log_line(
    hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = hub.create_token("a1", "i1")
    caplog.set_level(logging.INFO)
    with ws_client.connect(f"{hub.ws_url}/v1/agents/a1/ws",
                           additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        # A text frame whose bytes are not UTF-8: websockets refuses to send
        # one, so the frame is written on the socket by hand (client frames are masked).
        payload = b'{"id": 1, "kind": "\xc3\x28"}'
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        ws.socket.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    time.sleep(0.2)
    assert not _tracebacks(caplog), [r.getMessage() for r in _tracebacks(caplog)]
    said = [r.getMessage() for r in caplog.records if "UTF-8" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
