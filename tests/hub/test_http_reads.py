"""Reads, reviews, SSE, metrics, health and OpenAPI against a real hub."""

from __future__ import annotations

import gzip
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
import zstandard
from hub_helpers import auth, distinct_text, events_body, memory_event

from experience_sync import hookimpl
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.web.app import HubLimits
from experience_sync.hub.web.auth import split_token
from experience_sync.hub.web.server import HubServer
from experience_sync.models import ObservabilityEvent, new_id


def _get(hub: HubServer, token: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{hub.url}/v1/agents/a1/{path}", headers=auth(token), params=params)


def test_memories_search_and_paging(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    body = {
        "instance_id": "i1",
        "events": [memory_event("i1", f"{'cats' if i % 2 else 'dogs'} {distinct_text()}") for i in range(10)],
    }
    assert httpx.post(f"{hub.url}/v1/agents/a1/events", json=body, headers=auth(token)).status_code == 200
    page = _get(hub, token, "memories", limit=3, offset=0).json()
    assert page["total"] == 10 and len(page["items"]) == 3 and page["limit"] == 3
    rest = _get(hub, token, "memories", limit=100, offset=3).json()
    assert len(rest["items"]) == 7
    cats = _get(hub, token, "memories", q="cats").json()
    assert cats["total"] == 5
    assert all("cats" in m["content"] for m in cats["items"])


def test_bad_query_parameters_are_422_naming_them(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    for path, params, field in (
        ("memories", {"limit": 0}, "query.limit"),
        ("memories", {"offset": "x"}, "query.offset"),
        ("state", {"since": -1}, "query.since"),
        ("knowledge", {"status": "maybe"}, "query.status"),
    ):
        r = _get(hub, token, path, **params)
        assert r.status_code == 422, r.text
        assert field in [d["loc"] for d in r.json()["error"]["details"]]


def test_unknown_agent_reads_are_empty(hub: HubServer) -> None:
    token = hub.create_token("nobody", "i1", scope="read")
    state = httpx.get(f"{hub.url}/v1/agents/nobody/state", headers=auth(token)).json()
    assert state["agent_id"] == "nobody"
    assert state["memories"] == [] and state["skills"] == []
    for path in ("skills", "knowledge", "instances", "reviews"):
        assert httpx.get(f"{hub.url}/v1/agents/nobody/{path}", headers=auth(token)).json() == []


def test_state_since_cursor_returns_changes_only(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    first = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1", 2), headers=auth(token)).json()
    httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1", 1, prefix="later"), headers=auth(token))
    full = _get(hub, token, "state").json()
    assert len(full["memories"]) == 3
    changed = _get(hub, token, "state", since=first["cursor"]).json()
    assert changed["cursor"] >= full["cursor"]
    assert [m["content"].split()[0] for m in changed["memories"]] == ["later"]


def _characteristic(instance: str, value: str, minutes: int) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "timestamp": (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)).isoformat(),
        "source_instance": instance,
        "event_type": "characteristic",
        "data": {"key": "tone", "value": value, "confidence": 0.9},
    }


def _queue_review(hub: HubServer) -> tuple[str, str]:
    t1 = hub.create_token("a1", "i1")
    t2 = hub.create_token("a1", "i2")
    for token, instance, value, minute in ((t1, "i1", "formal", 0), (t2, "i2", "casual", 1)):
        body = {"instance_id": instance, "events": [_characteristic(instance, value, minute)]}
        assert httpx.post(f"{hub.url}/v1/agents/a1/events", json=body, headers=auth(token)).status_code == 200
    reviews = _get(hub, t1, "reviews").json()
    assert len(reviews) == 1, reviews
    return t1, reviews[0]["review_id"]


def test_review_accept_over_http(make_hub: Any) -> None:
    hub = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"))
    token, review_id = _queue_review(hub)
    r = httpx.post(f"{hub.url}/v1/agents/a1/reviews/{review_id}", json={"decision": "accept"}, headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    assert _get(hub, token, "reviews").json() == []
    assert [x["review_id"] for x in _get(hub, token, "reviews", status="accepted").json()] == [review_id]
    # deciding again changes nothing: the review keeps its first decision
    again = httpx.post(f"{hub.url}/v1/agents/a1/reviews/{review_id}", json={"decision": "reject"}, headers=auth(token))
    assert again.status_code == 200
    assert again.json()["status"] == "accepted"


def test_review_reject_and_errors_over_http(make_hub: Any) -> None:
    hub = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"))
    token, review_id = _queue_review(hub)
    url = f"{hub.url}/v1/agents/a1/reviews/{review_id}"
    assert httpx.post(url, json={"decision": "maybe"}, headers=auth(token)).status_code == 422
    assert httpx.post(url, content=b"{", headers=auth(token)).status_code == 400
    missing = httpx.post(f"{hub.url}/v1/agents/a1/reviews/nope", json={"decision": "reject"}, headers=auth(token))
    assert missing.status_code == 404
    r = httpx.post(url, json={"decision": "reject"}, headers=auth(token))
    assert r.status_code == 200 and r.json()["status"] == "rejected"


def test_review_decision_accepts_gzip_and_zstd_bodies(make_hub: Any) -> None:
    hub = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"),
                   limits=HubLimits(max_decompressed_bytes=1000))
    token, review_id = _queue_review(hub)
    url = f"{hub.url}/v1/agents/a1/reviews/{review_id}"

    def post(body: bytes, encoding: str) -> httpx.Response:
        return httpx.post(url, content=body, headers={**auth(token), "Content-Encoding": encoding})

    decision = orjson.dumps({"decision": "reject"})
    unknown = post(decision, "br")
    assert unknown.status_code == 415 and unknown.json()["error"]["status"] == 415
    assert post(b"not gzip", "gzip").status_code == 400
    bomb = post(gzip.compress(b" " * 5000 + decision), "gzip")
    assert bomb.status_code == 413, bomb.text
    assert _get(hub, token, "reviews").json()[0]["status"] == "open"
    r = post(gzip.compress(decision), "gzip")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"
    again = post(zstandard.ZstdCompressor().compress(orjson.dumps({"decision": "accept"})), "zstd")
    assert again.status_code == 200 and again.json()["status"] == "rejected"


def test_sse_streams_observability_events_of_the_tokens_agent(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    other = hub.create_token("a2", "i9")
    received: list[str] = []
    with httpx.stream("GET", f"{hub.url}/v1/events", headers=auth(token), timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # subscribed
        httpx.post(f"{hub.url}/v1/agents/a2/events", json=events_body("i9"), headers=auth(other))
        httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=auth(token))
        for line in lines:
            if line.startswith("data: "):
                received.append(line)
                event = ObservabilityEvent.model_validate_json(line[6:])
                assert event.agent_id == "a1"
                if event.type == "sync.event":
                    break
    assert received


def test_sse_type_filter_and_foreign_agent(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    assert httpx.get(f"{hub.url}/v1/events", params={"agent_id": "a2"}, headers=auth(token)).status_code == 403
    assert httpx.get(f"{hub.url}/v1/events").status_code == 401
    with httpx.stream("GET", f"{hub.url}/v1/events", params={"type": "hub"}, headers=auth(token), timeout=30) as s:
        lines = s.iter_lines()
        next(lines)
        httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=auth(token))
        httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i2"), headers=auth(token))  # 403
        for line in lines:
            if line.startswith("event: "):
                assert line == "event: hub.rejected"
                break


def test_sync_init_is_emitted_once_per_new_instance(hub: HubServer) -> None:
    seen: list[ObservabilityEvent] = []

    class Spy:
        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            if event.type == "sync.init":
                seen.append(event)

    hub.hub.pm.register(Spy(), name="spy")
    t1 = hub.create_token("a1", "i1")
    t2 = hub.create_token("a1", "i2")
    for _ in range(3):
        httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=auth(t1))
    httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i2"), headers=auth(t2))
    assert [(e.agent_id, e.instance_id) for e in seen] == [("a1", "i1"), ("a1", "i2")]
    assert seen[0].data["transport"] == "https"


def test_metrics_expose_counters(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1", 3), headers=auth(token))
    httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i2"), headers=auth(token))
    r = httpx.get(f"{hub.url}/metrics", headers=auth(token))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'experience_sync_hub_events_received_total{kind="events"} 3.0' in text
    assert 'experience_sync_hub_rejected_total{status="403"} 1.0' in text
    assert 'experience_sync_observability_events_total{type="sync.event"}' in text
    assert 'experience_sync_hub_requests_total{endpoint="events",status="200"} 1.0' in text
    assert "experience_sync_hub_request_seconds_bucket" in text


def test_metrics_need_a_valid_token_of_either_scope(hub: HubServer) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, auth("not-a-token"), auth("xs_deadbeef_" + "A" * 43)):
        r = httpx.get(f"{hub.url}/metrics", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["status"] == 401
        assert "experience_sync_hub" not in r.text
    # hub-wide figures: a token for any agent will do, read scope included
    reader = hub.create_token("a1", "prometheus", scope="read")
    writer = hub.create_token("other-agent", "i1")
    for token in (reader, writer):
        r = httpx.get(f"{hub.url}/metrics", headers=auth(token))
        assert r.status_code == 200, r.text
        assert "experience_sync_hub_requests_total" in r.text
    assert hub.hub.store.revoke_token(split_token(reader)[0])  # type: ignore[index]
    r = httpx.get(f"{hub.url}/metrics", headers=auth(reader))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    # the refusals are counted like any other endpoint's
    text = httpx.get(f"{hub.url}/metrics", headers=auth(writer)).text
    assert 'experience_sync_hub_rejected_total{status="401"} 5.0' in text
    # health checks stay open
    assert httpx.get(f"{hub.url}/healthz").status_code == 200


def test_metrics_are_open_on_a_no_auth_hub(make_hub: Any) -> None:
    hub = make_hub(auth=False)
    r = httpx.get(f"{hub.url}/metrics")
    assert r.status_code == 200, r.text
    assert "experience_sync_hub_requests_total" in r.text


def test_readyz_answers_503_while_the_warm_up_loads_agents(
    hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = hub.create_token("a1", "i1")
    # A hub nobody warms is ready at once.
    ready = httpx.get(f"{hub.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1", 3), headers=auth(token))
    assert r.status_code == 200, r.text
    # ``serve`` announces its warm-up before it listens: not ready until it ends.
    hub.hub.expect_warm()
    loading = httpx.get(f"{hub.url}/readyz")
    assert loading.status_code == 503 and loading.headers["retry-after"] == "1"
    assert loading.json()["error"]["message"] == "the hub is loading its agents (1 loaded)"
    assert httpx.get(f"{hub.url}/healthz").status_code == 200  # alive all along
    # A status answer, not a refused request: no hub.rejected event (logged each probe).
    assert not [r for r in caplog.records if "hub.rejected" in r.getMessage()]
    hub.hub.warm()
    done = httpx.get(f"{hub.url}/readyz")
    assert done.status_code == 200
    assert done.json() == {"status": "ready", "agents_loaded": 1, "memories_loaded": 3}
    assert "/readyz" in httpx.get(f"{hub.url}/openapi.json").json()["paths"]


def test_healthz_openapi_and_unknown_routes(hub: HubServer) -> None:
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok", "auth": True}
    spec = httpx.get(f"{hub.url}/openapi.json").json()
    for path in ("/v1/agents/{agent_id}/events", "/v1/agents/{agent_id}/batches",
                 "/v1/agents/{agent_id}/checkins", "/v1/agents/{agent_id}/state",
                 "/v1/agents/{agent_id}/reviews/{review_id}", "/v1/events", "/metrics"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    for name in ("EventsRequest", "ExperienceBatch", "CheckIn", "ExperienceEvent", "MergeResult", "AgentState"):
        assert name in schemas, name
    body = spec["paths"]["/v1/agents/{agent_id}/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/EventsRequest")
    r = httpx.get(f"{hub.url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["status"] == 404


def test_concurrent_writers_all_commit(hub: HubServer) -> None:
    tokens = {f"i{n}": hub.create_token("a1", f"i{n}") for n in range(4)}
    errors: list[Any] = []

    def write(instance: str) -> None:
        with httpx.Client(headers=auth(tokens[instance])) as client:
            for _ in range(5):
                r = client.post(f"{hub.url}/v1/agents/a1/events", json=events_body(instance, 4))
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=write, args=(i,)) for i in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _get(hub, tokens["i0"], "memories").json()["total"] == 80


def test_stopping_the_hub_ends_open_event_streams(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    ended = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{hub.url}/v1/events", headers=auth(token), timeout=30) as s:
                for _ in s.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    listener = threading.Thread(target=listen)
    listener.start()
    for _ in range(500):
        if hub.hub.events.subscribers:
            break
        threading.Event().wait(0.01)
    assert hub.hub.events.subscribers == 1
    hub.stop()
    listener.join(30)
    assert ended.is_set()
    hub.start()
    assert httpx.get(f"{hub.url}/healthz").status_code == 200
