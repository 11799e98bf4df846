"""The served OpenAPI document describes the errors each route really answers, with their real body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Query
from hub_helpers import auth, events_body
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from experience_sync import hookimpl
from experience_sync.hub.web.app import HubLimits
from experience_sync.hub.web.server import HubServer

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
INGEST = {"400", "401", "403", "413", "415", "422", "503"}
FORGET_ONE = {"401", "403", "404", "409", "422", "501"}
#: Every operation of the hub and the error statuses it documents.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("post", "/v1/agents/{agent_id}/events"): INGEST,
    ("post", "/v1/agents/{agent_id}/batches"): INGEST,
    ("post", "/v1/agents/{agent_id}/checkins"): INGEST,
    ("get", "/v1/agents/{agent_id}/state"): {"401", "403", "422"},
    ("get", "/v1/agents/{agent_id}/memories"): {"401", "403", "422"},
    ("get", "/v1/agents/{agent_id}/search"): {"401", "403", "422"},
    ("post", "/v1/agents/{agent_id}/search"): {"400", "401", "403", "413", "415", "422"},
    ("get", "/v1/agents/{agent_id}/skills"): {"401", "403", "422"},
    ("get", "/v1/agents/{agent_id}/knowledge"): {"401", "403", "422"},
    ("get", "/v1/agents/{agent_id}/instances"): {"401", "403", "422"},
    ("get", "/v1/agents/{agent_id}/reviews"): {"401", "403", "422"},
    ("post", "/v1/agents/{agent_id}/reviews/{review_id}"): {"400", "401", "403", "404", "413", "415", "422"},
    ("get", "/v1/events"): {"401", "403"},
    ("get", "/metrics"): {"401"},
    ("get", "/healthz"): set(),
    ("get", "/readyz"): {"503"},
    ("delete", "/v1/agents/{agent_id}/experiences"): {
        "400", "401", "403", "409", "413", "415", "422", "501"},
    ("delete", "/v1/agents/{agent_id}/memories/{memory_id}"): FORGET_ONE,
    ("delete", "/v1/agents/{agent_id}/knowledge/{knowledge_id}"): FORGET_ONE,
    ("delete", "/v1/agents/{agent_id}/skills/{skill_id}"): FORGET_ONE,
    ("delete", "/v1/agents/{agent_id}/instances/{instance_id}"): FORGET_ONE,
    ("get", "/v1/agents/{agent_id}/forgets"): {"401", "403", "422", "501"},
}


@pytest.fixture
def small_hub(make_hub: Any) -> HubServer:
    """A hub whose body limit is small enough to answer 413 cheaply."""
    return make_hub(limits=HubLimits(max_body_bytes=4000))


def _spec(hub: HubServer) -> dict[str, Any]:
    r = httpx.get(f"{hub.url}/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


def _documented_schema(spec: dict[str, Any], method: str, path: str, status: int) -> Draft202012Validator:
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    # Refs point into the document (#/components/...): resolve them against it.
    registry: Registry[Any] = Registry().with_resource(
        "urn:hub-openapi", Resource(contents=spec, specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": "urn:hub-openapi" + schema["$ref"]}, registry=registry)


def _check(spec: dict[str, Any], method: str, path: str, r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    _documented_schema(spec, method, path, status).validate(r.json())


def test_every_route_documents_its_errors_with_the_error_body(small_hub: HubServer) -> None:
    spec = _spec(small_hub)
    operations = {(m, p): op for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert set(operations) == set(EXPECTED)
    for key, op in operations.items():
        errors = {s for s in op["responses"] if int(s) >= 400}
        assert errors == EXPECTED[key], key
        for status in errors:
            response = op["responses"][status]
            assert response["description"], (key, status)
            assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (key, status)
    # FastAPI's own 422 body is never sent by the hub, so never documented.
    assert "HTTPValidationError" not in json.dumps(spec)
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"] and body["additionalProperties"] is False


def test_documented_error_schema_refuses_other_bodies(small_hub: HubServer) -> None:
    validator = _documented_schema(_spec(small_hub), "get", "/v1/agents/{agent_id}/memories", 422)
    assert validator.is_valid({"error": {"status": 422, "message": "m", "details": [{"loc": "q", "msg": "m", "type": "t"}]}})
    for wrong in (
        {"detail": [{"loc": ["query", "limit"], "msg": "m", "type": "t"}]},
        {"error": {"status": 422}},
        {"error": {"status": 422, "message": "m", "details": [{"loc": ["query", "limit"], "msg": "m", "type": "t"}]}},
        {"error": {"status": 200, "message": "m"}},
    ):
        assert not validator.is_valid(wrong), wrong


def test_real_error_answers_match_the_documented_schema(small_hub: HubServer) -> None:
    hub = small_hub
    spec = _spec(hub)
    token = hub.create_token("a1", "i1")
    events, state = "/v1/agents/{agent_id}/events", "/v1/agents/{agent_id}/state"
    decision = "/v1/agents/{agent_id}/reviews/{review_id}"
    base = f"{hub.url}/v1/agents/a1"

    # 401: no token
    _check(spec, "post", events, httpx.post(f"{base}/events", json=events_body("i1")), 401)
    _check(spec, "get", state, httpx.get(f"{base}/state"), 401)
    _check(spec, "get", "/metrics", httpx.get(f"{hub.url}/metrics"), 401)
    _check(spec, "get", "/v1/events", httpx.get(f"{hub.url}/v1/events"), 401)
    # 403: another agent's token
    other = hub.create_token("a2", "i1", scope="read")
    _check(spec, "get", state, httpx.get(f"{base}/state", headers=auth(other)), 403)
    # 400, 413, 415 on ingestion
    _check(spec, "post", events, httpx.post(f"{base}/events", content=b"{", headers=auth(token)), 400)
    big = events_body("i1", 40)
    _check(spec, "post", events, httpx.post(f"{base}/events", json=big, headers=auth(token)), 413)
    _check(spec, "post", "/v1/agents/{agent_id}/batches",
           httpx.post(f"{base}/batches", json=big, headers=auth(token)), 413)
    _check(spec, "post", events, httpx.post(f"{base}/events", json=events_body("i1"),
                                            headers={**auth(token), "Content-Encoding": "br"}), 415)
    # the search route, GET and POST
    search = "/v1/agents/{agent_id}/search"
    _check(spec, "get", search, httpx.get(f"{base}/search", params={"q": "x"}), 401)
    _check(spec, "get", search, httpx.get(f"{base}/search", params={"q": "x", "k": 0},
                                          headers=auth(token)), 422)
    _check(spec, "post", search, httpx.post(f"{base}/search", content=b"{",
                                            headers=auth(token)), 400)
    _check(spec, "post", search, httpx.post(f"{base}/search", content=b"x" * 5000,
                                            headers=auth(token)), 413)
    _check(spec, "post", search, httpx.post(f"{base}/search", json={"q": "x"},
                                            headers={**auth(token), "Content-Encoding": "br"}), 415)
    _check(spec, "post", search, httpx.post(f"{base}/search", json={"q": ""},
                                            headers=auth(token)), 422)
    _check(spec, "post", search, httpx.post(f"{base}/search", json={"q": "x"},
                                            headers=auth(other)), 403)
    # 422: a bad query parameter, a bad body
    r = httpx.get(f"{base}/memories", params={"limit": 0}, headers=auth(token))
    _check(spec, "get", "/v1/agents/{agent_id}/memories", r, 422)
    assert [d["loc"] for d in r.json()["error"]["details"]] == ["query.limit"]
    r = httpx.post(f"{base}/checkins", json={"instance_id": "i1", "summary": {"memories": -1}}, headers=auth(token))
    _check(spec, "post", "/v1/agents/{agent_id}/checkins", r, 422)
    # review decisions: 404, 422, 413
    _check(spec, "post", decision,
           httpx.post(f"{base}/reviews/nope", json={"decision": "accept"}, headers=auth(token)), 404)
    _check(spec, "post", decision,
           httpx.post(f"{base}/reviews/nope", json={"decision": "maybe"}, headers=auth(token)), 422)
    _check(spec, "post", decision,
           httpx.post(f"{base}/reviews/nope", content=b" " * 5000, headers=auth(token)), 413)


def test_a_plugin_route_that_declares_no_errors_documents_the_real_422(
    register_plugin: Callable[..., str], make_hub: Any
) -> None:
    class Plugin:
        @hookimpl
        def experience_sync_register_hub_routes(self, app: Any, hub: Any) -> None:
            @app.get("/v1/plugin/echo")
            def echo(n: int = Query(ge=1)) -> dict[str, int]:
                return {"n": n}

    register_plugin(Plugin(), name="echo-routes")
    hub = make_hub()
    spec = _spec(hub)
    assert spec["paths"]["/v1/plugin/echo"]["get"]["responses"]["422"]["content"] == {
        "application/json": {"schema": ERROR_REF}
    }
    assert "HTTPValidationError" not in json.dumps(spec)
    _check(spec, "get", "/v1/plugin/echo", httpx.get(f"{hub.url}/v1/plugin/echo", params={"n": 0}), 422)
