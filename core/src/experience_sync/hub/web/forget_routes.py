"""The forget routes: ``DELETE`` what a source agent holds, and the audit trail (admin scope).

``DELETE /v1/agents/{agent_id}/experiences`` takes a
:class:`~experience_sync.forgetting.ForgetRequest` body: a text query or a
subject travels in the body, never in the URL, so no access log or proxy
records the name being forgotten. The item routes (a memory, a knowledge
item, a skill, an instance) are the same request for one id. Every answer is
a :class:`~experience_sync.forgetting.ForgetResult`;
``GET /v1/agents/{agent_id}/forgets`` lists the audit records. See
``docs/wire-protocol.md`` (Forgetting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from experience_sync.forgetting import ForgetRecord, ForgetRequest, ForgetResult
from experience_sync.hub.forget import ForgetRefused, Requester, forget
from experience_sync.hub.web.auth import Principal, authorize_admin
from experience_sync.hub.web.wire import ErrorBody, HubError, decode_body, validation_details

if TYPE_CHECKING:
    from experience_sync.hub.web.app import _Deps

__all__ = ["forget_routes"]

_RECORDS = TypeAdapter(list[ForgetRecord])

_DESCRIPTIONS = {
    400: "The body is not valid JSON, or its gzip/zstd encoding is corrupt.",
    401: "No bearer token, or a malformed, unknown or revoked one.",
    403: "The token is not an admin token of this agent (read, write and review tokens "
    "cannot forget).",
    404: "The memory, knowledge item, skill or instance the path names is not in the "
    "agent's state.",
    409: "The agent's log holds an entry kind this hub does not know (a newer version's).",
    413: "The body exceeds --max-body-bytes, or --max-decompressed-bytes once decoded.",
    415: "A Content-Encoding other than gzip, zstd or identity.",
    422: "The body does not match ForgetRequest (no selector, an empty query, too many "
    "ids); `details[].loc` names each failing field. Or the path's agent_id is invalid.",
    501: "The hub's store cannot forget.",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


def _json(body: bytes | str) -> Response:
    return Response(body, media_type="application/json")


_RESULT_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "ForgetResult, sent once the forget is committed."}
}


def forget_routes(app: FastAPI, deps: _Deps) -> None:
    """Forgetting: the DELETE routes and the audit trail."""
    hub = deps.hub
    call = deps.call

    async def admin(request: Request, agent_id: str) -> Principal:
        principal = await deps.principal_of(request)
        authorize_admin(principal, agent_id)
        return principal

    def run(principal: Principal, agent_id: str, wanted: ForgetRequest) -> bytes:
        who = Requester(principal.token_id, principal.instance_id, principal.scope)
        try:
            result = forget(hub.engine, agent_id, wanted, who)
        except ForgetRefused as exc:
            raise HubError(exc.status, exc.message) from None
        return result.model_dump_json().encode()

    def parse(body: bytes, encoding: str | None) -> ForgetRequest:
        raw = decode_body(body, encoding, hub.limits.max_decompressed_bytes)
        try:
            fields = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HubError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise HubError(422, "(body): must be a JSON object (a ForgetRequest)")
        try:
            return ForgetRequest.model_validate(fields)
        except ValidationError as exc:
            details = validation_details(exc)
            loc = details[0]["loc"] or "(body)"
            raise HubError(422, f"{loc}: {details[0]['msg']}", details) from None

    body_doc = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": ForgetRequest.model_json_schema()}}}}

    @app.delete("/v1/agents/{agent_id}/experiences", response_model=ForgetResult,
                tags=["forget"], openapi_extra=body_doc,
                responses={**_RESULT_DOC, **_errors(400, 401, 403, 409, 413, 415, 422, 501)})
    async def forget_experiences(agent_id: str, request: Request) -> Response:
        """Forget every event a ``ForgetRequest`` selects (ids, instances, a subject, a text query)."""
        principal = await admin(request, agent_id)
        body = await deps.read_body(request)
        encoding = request.headers.get("content-encoding")

        def work() -> bytes:
            return run(principal, agent_id, parse(body, encoding))

        return _json(await call(work))

    async def one(request: Request, agent_id: str, kind: str, ident: str) -> Response:
        principal = await admin(request, agent_id)
        dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")

        def work() -> bytes:
            engine = hub.engine
            if kind == "memory_ids":
                found = any(m.memory_id == ident for m in engine.state(agent_id).memories)
            elif kind == "knowledge_ids":
                found = any(ident in (k.knowledge_id, k.key) for k in engine.knowledge(agent_id))
            elif kind == "skill_ids":
                found = any(s.skill_id == ident for s in engine.skills(agent_id))
            else:
                found = any(i.instance_id == ident for i in engine.instances(agent_id))
            if not found:
                noun = kind.removesuffix("_ids")
                raise HubError(404, f"no {noun} {ident!r} for agent {agent_id!r}")
            wanted = ForgetRequest.model_validate({kind: [ident], "dry_run": dry_run})
            return run(principal, agent_id, wanted)

        return _json(await call(work))

    item_errors = {**_RESULT_DOC, **_errors(401, 403, 404, 409, 422, 501)}

    @app.delete("/v1/agents/{agent_id}/memories/{memory_id}", response_model=ForgetResult,
                tags=["forget"], responses=item_errors)
    async def forget_memory(agent_id: str, memory_id: str, request: Request) -> Response:
        """Forget a memory: the events it was merged from and the statements it superseded."""
        return await one(request, agent_id, "memory_ids", memory_id)

    @app.delete("/v1/agents/{agent_id}/knowledge/{knowledge_id:path}",
                response_model=ForgetResult, tags=["forget"], responses=item_errors)
    async def forget_knowledge(agent_id: str, knowledge_id: str, request: Request) -> Response:
        """Forget a knowledge item (by ``knowledge_id`` or ``key``): every report of it."""
        return await one(request, agent_id, "knowledge_ids", knowledge_id)

    @app.delete("/v1/agents/{agent_id}/skills/{skill_id}", response_model=ForgetResult,
                tags=["forget"], responses=item_errors)
    async def forget_skill(agent_id: str, skill_id: str, request: Request) -> Response:
        """Forget a skill's history: every report of it, from every instance."""
        return await one(request, agent_id, "skill_ids", skill_id)

    @app.delete("/v1/agents/{agent_id}/instances/{instance_id}", response_model=ForgetResult,
                tags=["forget"], responses=item_errors)
    async def forget_instance(agent_id: str, instance_id: str, request: Request) -> Response:
        """Forget everything one instance sent."""
        return await one(request, agent_id, "instance_ids", instance_id)

    @app.get("/v1/agents/{agent_id}/forgets", response_model=list[ForgetRecord],
             tags=["forget"], responses=_errors(401, 403, 422, 501))
    async def get_forgets(agent_id: str, request: Request) -> Response:
        """The audit trail of the agent's forgets: who, when, which selectors, how many. No text."""
        await admin(request, agent_id)

        def work() -> bytes:
            try:
                return _RECORDS.dump_json(hub.store.forget_records(agent_id))
            except NotImplementedError as exc:
                raise HubError(501, str(exc)) from None

        return _json(await call(work))
