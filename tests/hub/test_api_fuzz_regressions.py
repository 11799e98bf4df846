"""Hostile and malformed requests against a real hub: always a 4xx with a JSON error
(or a 200 for what the wire format allows), never a 500, a dropped connection or a
poisoned agent; found by fuzzing the API (schemathesis and hand-made inputs)."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from hub_helpers import auth, distinct_text, events_body, memory_event

from experience_sync.hub.web.server import HubServer
from experience_sync.models import MAX_JSON_DEPTH


def _post(hub: HubServer, token: str, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/v1/agents/a1/{path}",
        content=raw,
        headers={**auth(token), "Content-Type": "application/json", **headers},
        timeout=30,
    )


def _assert_json_error(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    error: dict[str, Any] = r.json()["error"]
    assert error["status"] == r.status_code
    assert isinstance(error["message"], str) and error["message"]
    return error


def _connect(hub: HubServer, token: str) -> Any:
    return ws_client.connect(
        f"{hub.ws_url}/v1/agents/a1/ws", additional_headers=auth(token), compression=None
    )


def _event(fields: dict[str, Any]) -> dict[str, Any]:
    # An event as the wire needs it: its own id and timestamp.
    return {"event_id": uuid.uuid4().hex, "timestamp": "2026-01-01T00:00:00Z", **fields}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _still_works(hub: HubServer, token: str) -> None:
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=auth(token))
    assert r.status_code == 200, r.text
    assert httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(token)).status_code == 200


# ------------------------------------------------------------ timestamps without a timezone


def test_timestamps_without_a_timezone_are_read_as_utc(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    event = memory_event("i1", f"naive {distinct_text()}", timestamp="2024-05-01T12:00:00")
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/events",
        json={"instance_id": "i1", "events": [event]},
        headers=auth(token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["memories_added"] == 1
    batch = {
        "instance_id": "i1",
        "timestamp_start": "2024-05-01T12:00:00",
        "timestamp_end": "2024-05-01T12:00:01",
        "events": [memory_event("i1", f"naive {distinct_text()}", timestamp="2024-05-01T12:00:01")],
    }
    r = httpx.post(f"{hub.url}/v1/agents/a1/batches", json=batch, headers=auth(token))
    assert r.status_code == 200, r.text
    checkin = {
        "instance_id": "i1",
        "timestamp": "2024-05-01T12:00:02",
        "state": {"memories": [{"content": f"naive {distinct_text()}"}]},
    }
    r = httpx.post(f"{hub.url}/v1/agents/a1/checkins", json=checkin, headers=auth(token))
    assert r.status_code == 200, r.text
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 3
    assert any(m["created_at"].startswith("2024-05-01T12:00:00") and m["created_at"].endswith("Z")
               for m in page["items"]), page


def test_a_naive_last_used_does_not_poison_later_skill_reports(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")

    def report(last_used: str, invocations: int) -> httpx.Response:
        event = _event({
            "source_instance": "i1",
            "event_type": "skill",
            "data": {"name": "sql", "usage": {"invocations": invocations, "last_used": last_used}},
        })
        body = {"instance_id": "i1", "events": [event]}
        return httpx.post(f"{hub.url}/v1/agents/a1/events", json=body, headers=auth(token))

    assert report("2024-01-01T00:00:00", 1).status_code == 200
    r = report("2024-02-01T00:00:00Z", 2)
    assert r.status_code == 200, r.text
    hub.restart()
    assert report("2024-03-01T00:00:00+02:00", 3).status_code == 200
    [skill] = httpx.get(f"{hub.url}/v1/agents/a1/skills", headers=auth(token)).json()
    assert skill["usage"]["total_invocations"] == 3
    last_used = datetime.fromisoformat(skill["usage"]["last_used"])
    assert last_used == datetime(2024, 2, 29, 22, tzinfo=timezone.utc)


# ------------------------------------------------------------ deeply nested free-form values

_DEEP = MAX_JSON_DEPTH + 1
_FREE_FORM: dict[str, tuple[str, Any, str]] = {
    "interaction field": (
        "events",
        lambda v: {"instance_id": "i1", "events": [
            _event({"source_instance": "i1", "event_type": "interaction", "data": {"x": v}})]},
        "events.0.data.x",
    ),
    "characteristic value": (
        "events",
        lambda v: {"instance_id": "i1", "events": [
            _event({"source_instance": "i1", "event_type": "characteristic",
                    "data": {"key": "k", "value": v}})]},
        "events.0.data.value",
    ),
    "context environment": (
        "events",
        lambda v: {"instance_id": "i1", "events": [
            memory_event("i1", distinct_text(), context={"environment": {"x": v}})]},
        "events.0.context.environment.x",
    ),
    "check-in state characteristic": (
        "checkins",
        lambda v: {"instance_id": "i1", "state": {"characteristics": {"k": v}}},
        "state.characteristics.k",
    ),
}


@pytest.mark.parametrize("case", sorted(_FREE_FORM))
@pytest.mark.parametrize("depth", [_DEEP, 300, 1000])
def test_free_form_values_nested_too_deep_are_422(hub: HubServer, case: str, depth: int) -> None:
    token = hub.create_token("a1", "i1")
    path, build, loc = _FREE_FORM[case]
    nested = "[" * depth + "]" * depth  # built as text: json.dumps would recurse too deep
    r = _post(hub, token, path, json.dumps(build("<v>")).replace('"<v>"', nested).encode())
    error = _assert_json_error(r, 422)
    assert loc in [d["loc"] for d in error["details"]], error
    _still_works(hub, token)


@pytest.mark.parametrize("case", sorted(_FREE_FORM))
def test_free_form_values_nested_to_the_limit_are_kept(hub: HubServer, case: str) -> None:
    token = hub.create_token("a1", "i1")
    path, build, _ = _FREE_FORM[case]
    r = _post(hub, token, path, json.dumps(build(_nested(MAX_JSON_DEPTH))).encode())
    assert r.status_code == 200, r.text
    state = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(token))
    assert state.status_code == 200


def test_deeply_nested_websocket_payload_gets_an_error_ack(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    _, build, loc = _FREE_FORM["interaction field"]
    with _connect(hub, token) as ws:
        ws.send(json.dumps({"id": "deep", "kind": "events", "payload": build(_nested(300))}))
        ack = json.loads(ws.recv(timeout=30))
        assert ack["id"] == "deep" and ack["ok"] is False
        assert ack["error"]["status"] == 422
        assert loc in [d["loc"] for d in ack["error"]["details"]]
        ws.send(json.dumps({"id": "ok", "kind": "events", "payload": events_body("i1")}))
        assert json.loads(ws.recv(timeout=30))["ok"] is True


# ------------------------------------------------------------ WebSocket frame envelopes


@pytest.mark.parametrize(
    "frame",
    [
        {"id": 1, "kind": ["events"], "payload": {}},
        {"id": 2, "kind": {"events": 1}, "payload": {}},
        {"id": _nested(300), "kind": "events", "payload": {"instance_id": "i1", "events": []}},
        {"id": _nested(_DEEP), "kind": "nap"},
    ],
    ids=["kind-list", "kind-object", "id-nested-300", "id-nested-past-limit"],
)
def test_malformed_frame_envelopes_get_error_acks(hub: HubServer, frame: dict[str, Any]) -> None:
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(json.dumps(frame))
        ack = json.loads(ws.recv(timeout=30))
        assert ack["ok"] is False
        assert ack["error"]["status"] == 422, ack
        ws.send(json.dumps({"id": "ok", "kind": "events", "payload": events_body("i1")}))
        assert json.loads(ws.recv(timeout=30))["ok"] is True
    # a frame refused for its id is not merged either
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 1


@pytest.mark.parametrize(
    "frame",
    ["", b"", b"\xff\xfe\x00", "null", "42", '"events"', "{}", "[" * 100_000 + "]" * 100_000,
     '{"id":"\\ud800","kind":"events","payload":{}}', '{"id":1,"kind":"events","meta":[],"payload":{}}',
     '{"id":1,"kind":"events","payload":null}'],
    ids=["empty-text", "empty-binary", "bad-utf8", "null", "number", "string", "empty-object",
         "nested-100k", "lone-surrogate", "meta-array", "payload-null"],
)
def test_garbage_frames_get_4xx_acks(hub: HubServer, frame: str | bytes) -> None:
    token = hub.create_token("a1", "i1")
    with _connect(hub, token) as ws:
        ws.send(frame)
        ack = json.loads(ws.recv(timeout=30))
        assert ack["ok"] is False
        assert 400 <= ack["error"]["status"] < 500, ack


# ------------------------------------------------------------ headers


@pytest.mark.parametrize("value", [b"\xb2", b"\xb9\xb2", b"1e3", b"0x10", b"+5"])
def test_backlog_header_that_is_not_ascii_digits_is_400(hub: HubServer, value: bytes) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/events",
        json=events_body("i1"),
        headers={**auth(token), "X-Experience-Sync-Backlog": value},
    )
    _assert_json_error(r, 400)


@pytest.mark.parametrize(
    "value",
    [b"Bearer", b"Basic abc", b"Bearer xs__", b"Bearer xs_a_b_c", b"Bearer \xff\xfe",
     b"Bearer xs_" + b"a" * 50_000, b"Bearer \t x"],
)
def test_garbage_authorization_is_401(hub: HubServer, value: bytes) -> None:
    for method, path in (("GET", "state"), ("POST", "events"), ("POST", "reviews/r1")):
        r = httpx.request(
            method, f"{hub.url}/v1/agents/a1/{path}", content=b"{}", headers={"Authorization": value}
        )
        _assert_json_error(r, 401)


# ------------------------------------------------------------ bodies


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b'{"instance_id":"i1","events":[],"x":NaN}', {}),
        (b'{"instance_id":"i1","events":[],"x":Infinity}', {}),
        (b'{"instance_id":"i1","events":[],"x":1' + b"0" * 400 + b"}", {}),
        (b"[" * 100_000 + b"]" * 100_000, {}),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, {}),
        (b'{"instance_id":"\\ud800","events":[]}', {}),
        (b'{"instance_id":"i1\xc3\x28","events":[]}', {}),
        (b"<unit/>", {"Content-Type": "application/xml"}),
        (b"garbage", {"Content-Encoding": "zstd"}),
        (b"", {"Content-Encoding": "gzip"}),
        (gzip.compress(b"{}") + b"trailing", {"Content-Encoding": "gzip"}),
        (b"x", {"Content-Encoding": "gzip, zstd"}),
        (b"x", {"Content-Encoding": "deflate"}),
    ],
    ids=["nan", "infinity", "huge-number", "nested-arrays-100k", "nested-objects-100k",
         "lone-surrogate", "invalid-utf8", "xml", "zstd-garbage", "gzip-empty",
         "gzip-trailing-garbage", "stacked-encodings", "deflate"],
)
def test_hostile_bodies_are_4xx_on_every_ingest_route(
    hub: HubServer, raw: bytes, headers: dict[str, str]
) -> None:
    token = hub.create_token("a1", "i1")
    for path in ("events", "batches", "checkins"):
        _assert_json_error(_post(hub, token, path, raw, **headers), 400, 415, 422)
    _still_works(hub, token)


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"sequence": -1}, "events.0.sequence"),
        ({"lamport": -1}, "events.0.lamport"),
        ({"lamport": 2**64}, "events.0.lamport"),
        ({"event_id": "e" * 201}, "events.0.event_id"),
        ({"source_instance": "i" * 201}, "events.0.source_instance"),
        ({"timestamp": "yesterday"}, "events.0.timestamp"),
        ({"timestamp": 10**20}, "events.0.timestamp"),
        ({"timestamp": "2024-13-01T00:00:00Z"}, "events.0.timestamp"),
        # Every timestamp the hub answers is UTC: one that UTC cannot hold is refused.
        ({"timestamp": "9999-12-31T23:59:59-23:59"}, "events.0.timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+23:59"}, "events.0.timestamp"),
    ],
)
def test_out_of_range_event_fields_are_422(hub: HubServer, change: dict[str, Any], loc: str) -> None:
    token = hub.create_token("a1", "i1")
    body = {"instance_id": "i1", "events": [memory_event("i1", distinct_text(), **change)]}
    error = _assert_json_error(_post(hub, token, "events", json.dumps(body).encode()), 422)
    assert loc in [d["loc"] for d in error["details"]], error


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": "9999-12-31T23:59:59Z"},
        {"timestamp": "9999-12-31T22:59:59-01:00"},
        {"timestamp": "0001-01-01T23:00:00+23:00"},
        {"timestamp": "1970-01-01T00:00:00Z"},
        {"timestamp": -(10**11)},
        {"sequence": 2**63 - 1, "lamport": 2**63 - 1},
        {"context": {"environment": {"n": 10**30, "s": "\u0000\U0010ffff"}}},
    ],
)
def test_extreme_but_valid_events_are_merged_and_readable(hub: HubServer, change: dict[str, Any]) -> None:
    token = hub.create_token("a1", "i1")
    body = {"instance_id": "i1", "events": [memory_event("i1", distinct_text(), **change)]}
    r = _post(hub, token, "events", json.dumps(body).encode())
    assert r.status_code == 200, r.text
    assert r.json()["memories_added"] == 1
    for path in ("state", "memories", "instances"):
        assert httpx.get(f"{hub.url}/v1/agents/a1/{path}", headers=auth(token)).status_code == 200


# ------------------------------------------------------------ reads and review decisions


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("state", "since=abc"), ("state", "since=1e3"), ("state", "since="), ("state", "since=%00"),
        ("memories", "limit=-1"), ("memories", "limit=1001"), ("memories", "offset=-5"),
        ("memories", "offset=abc"), ("knowledge", "status="), ("reviews", "status=pending"),
    ],
)
def test_read_query_parameters_of_the_wrong_type_are_422(hub: HubServer, path: str, params: str) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.get(f"{hub.url}/v1/agents/a1/{path}?{params}", headers=auth(token))
    _assert_json_error(r, 422)


@pytest.mark.parametrize(
    ("path", "params"),
    [("memories", "q=%00%ff%ed%a0%80"), ("memories", "q=" + "x" * 4000)],
)
def test_extreme_read_query_parameters_are_answered(hub: HubServer, path: str, params: str) -> None:
    token = hub.create_token("a1", "i1")
    _still_works(hub, token)
    r = httpx.get(f"{hub.url}/v1/agents/a1/{path}?{params}", headers=auth(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [("state", "since=" + "9" * 40, "query.since"), ("state", "since=1000", "query.since"),
     ("memories", "offset=" + "9" * 40, "query.offset"), ("memories", "offset=1000", "query.offset")],
)
def test_a_cursor_or_offset_beyond_the_end_is_422_naming_it(
    hub: HubServer, path: str, params: str, loc: str
) -> None:
    # A client with a corrupt cursor must not silently see no changes.
    token = hub.create_token("a1", "i1")
    _still_works(hub, token)
    r = httpx.get(f"{hub.url}/v1/agents/a1/{path}?{params}", headers=auth(token))
    error = _assert_json_error(r, 422)
    assert [d["loc"] for d in error["details"]] == [loc], error
    head = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(token)).json()
    at_head = httpx.get(f"{hub.url}/v1/agents/a1/state?since={head['cursor']}", headers=auth(token))
    assert at_head.status_code == 200 and at_head.json()["memories"] == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 400), (b"\xff\xfe", 400), (b"[" * 100_000, 400), (b'{"decision":"\\ud800"}', 400),
        (b"null", 422), (b"[]", 422), (b'"accept"', 422), (b'{"decision":null}', 422),
        (b'{"decision":"ACCEPT"}', 422), (b'{"decision":"accept","why":1}', 422),
        (b'{"decision":"accept"}', 404),
    ],
)
def test_malformed_review_decisions_are_4xx(hub: HubServer, raw: bytes, status: int) -> None:
    token = hub.create_token("a1", "i1")
    for review_id in ("r1", "r" * 5000, "%00", "%ff"):
        _assert_json_error(_post(hub, token, f"reviews/{review_id}", raw), status)


def test_method_not_allowed_is_405_with_allow_header(hub: HubServer) -> None:
    for method, path in (("TRACE", "/healthz"), ("DELETE", "/v1/agents/a1/events"), ("PUT", "/v1/agents/a1/state")):
        r = httpx.request(method, f"{hub.url}{path}")
        _assert_json_error(r, 405)
        assert r.headers.get("allow"), (method, path, r.headers)


# ------------------------------------------------------------ sender labels and clocks


def test_long_protocol_and_transport_labels_are_refused(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    body = json.dumps(events_body("i1")).encode()
    for header in ("X-Experience-Sync-Protocol", "X-Experience-Sync-Transport"):
        error = _assert_json_error(_post(hub, token, "events", body, **{header: "x" * 65}), 400)
        assert header in error["message"]
    assert _post(hub, token, "events", body, **{"X-Experience-Sync-Protocol": "streaming"}).status_code == 200
    with _connect(hub, token) as ws:
        for protocol in ("p" * 65, 7):
            ws.send(json.dumps({"id": 1, "kind": "events", "meta": {"protocol": protocol},
                                "payload": events_body("i1")}))
            ack = json.loads(ws.recv(timeout=20))
            assert ack["ok"] is False and ack["error"]["status"] == 422, ack
            assert ack["error"]["details"][0]["loc"] == "meta.protocol"


@pytest.mark.parametrize("field", ["sequence", "lamport"])
def test_event_clocks_beyond_a_signed_64_bit_integer_are_422(hub: HubServer, field: str) -> None:
    token = hub.create_token("a1", "i1")
    event = memory_event("i1", distinct_text(), **{field: 2**63})
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json={"instance_id": "i1", "events": [event]},
                   headers=auth(token))
    error = _assert_json_error(r, 422)
    assert error["details"][0]["loc"] == f"events.0.{field}"
    event[field] = 2**63 - 1
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json={"instance_id": "i1", "events": [event]},
                   headers=auth(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("key", ["", "k" * 501, "a\x00b"], ids=["empty", "501-chars", "nul"])
def test_a_checkin_state_characteristic_key_out_of_bounds_is_422(hub: HubServer, key: str) -> None:
    # Each key of state.characteristics becomes a characteristic event's key:
    # it was a 500 when it broke that key's limits (found by fuzzing).
    token = hub.create_token("a1", "i1")
    body = {"checkin_id": "ck-1", "instance_id": "i1",
            "state": {"characteristics": {"tone": "formal", key: 1}}}
    error = _assert_json_error(_post(hub, token, "checkins", json.dumps(body).encode()), 422)
    assert any(d["loc"].startswith("state.characteristics") for d in error["details"]), error
    state = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(token)).json()
    assert state["characteristics"] == {}
    body["state"] = {"characteristics": {"tone": "formal", "k" * 500: 1}}
    r = _post(hub, token, "checkins", json.dumps(body).encode())
    assert r.status_code == 200, r.text
    assert r.json()["characteristics_updated"] == 2
