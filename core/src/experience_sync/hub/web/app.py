"""The hub's HTTP and WebSocket API (FastAPI): ingestion, reads, events, metrics.

:class:`~experience_sync.hub.service.Hub` (re-exported here) holds what
serving needs; :func:`create_app` builds the ASGI application on it. ``docs/wire-protocol.md`` is the reference for
every route.

Bodies are parsed with orjson and validated with ``model_validate`` rather
than through FastAPI's body parameters, which are several times slower on
100-event arrays; blocking work (token lookups, validation, the engine) runs
in the thread pool so the event loop stays free for other connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from experience_sync.hub.metrics import CONTENT_TYPE
from experience_sync.hub.service import Hub
from experience_sync.hub.web.auth import AuthError, Principal, authorize_review
from experience_sync.hub.web.console import mount_console
from experience_sync.hub.web.forget_routes import forget_routes
from experience_sync.hub.web.wire import (
    DEFAULT_PROTOCOL,
    LIST_ADAPTERS,
    QUERY_ERRORS,
    READ_ERRORS,
    REVIEW_DECISION_ERRORS,
    SEARCH_BODY_ERRORS,
    Health,
    HubError,
    HubLimits,
    Kind,
    MemoryPage,
    Readiness,
    ReviewDecision,
    backlog_header,
    bearer_token,
    body_schema,
    check_json_content_type,
    decode_body,
    endpoint_label,
    error_responses,
    header_label,
    install_openapi,
    query_error,
    store_full_error,
    store_is_full,
    unit_errors,
    validation_details,
)
from experience_sync.models import (
    MAX_COUNT,
    AgentState,
    InstanceStatus,
    KnowledgeItem,
    MergeResult,
    Review,
    Skill,
)
from experience_sync.recall.models import SearchQuery, SearchResults

if TYPE_CHECKING:
    pass

log = logging.getLogger("experience_sync.hub")
_T = TypeVar("_T")

#: How often an open WebSocket re-checks its token (revocation takes effect
#: at the first frame after this many seconds).
WS_REAUTH_SECONDS = 5.0

#: The status ``/metrics`` counts a request under when its client went away
#: before the answer (nginx's convention; never sent: there is no one to send it to).
CLIENT_CLOSED = 499


class _MetricsMiddleware:
    """Counts each HTTP request by endpoint and status (pure ASGI: cheap).

    It also answers the two faults that are not the request's: a client that
    closed the connection mid-body is counted as :data:`CLIENT_CLOSED` and
    logged in one line (no traceback, no 500), and a store with no room left
    is a 503 with the JSON error body and ``Retry-After`` (nothing was written:
    the engine commits a unit whole or not at all).
    """

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        responded = False

        async def _send(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
            await send(message)

        endpoint = endpoint_label(scope["path"])
        try:
            await self.app(scope, receive, _send)
        except ClientDisconnect:
            status = CLIENT_CLOSED
            log.info("%s %s: the client closed the connection before the request was read whole",
                     scope.get("method", "?"), endpoint)
        except Exception as exc:
            if responded or not store_is_full(exc):
                raise
            err = store_full_error(self.hub.limits.retry_after_seconds)
            log.error("%s %s: the store is full (%s); answered 503", scope.get("method", "?"),
                      endpoint, exc)
            agent_id = (scope.get("path_params") or {}).get("agent_id")
            self.hub.reject(err.status, err.message, agent_id, None, endpoint)
            response = _json(orjson.dumps(err.body()), err.status)
            response.headers.update(err.headers or {})
            await response(scope, receive, _send)
        finally:
            self.hub.metrics.observe_request(endpoint, status, time.perf_counter() - started)


def _json(body: bytes | str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


@dataclass
class _Deps:
    """What every route of one hub shares: the hub, authentication and body reading."""

    hub: Hub
    principal_of: Callable[[Request], Awaitable[Principal]]
    reader: Callable[[Request, str], Awaitable[Principal]]
    reviewer: Callable[[Request, str], Awaitable[Principal]]
    writer: Callable[[Request, str], Awaitable[Principal]]
    read_body: Callable[[Request], Awaitable[bytes]]
    call: Callable[..., Any]


def _deps(hub: Hub) -> _Deps:
    """The shared route helpers of ``hub`` (auth as FastAPI-style dependencies)."""

    async def principal_of(request: Request) -> Principal:
        principal = await run_in_threadpool(hub.auth.authenticate, bearer_token(request.headers))
        request.state.principal = principal
        return principal

    async def reader(request: Request, agent_id: str) -> Principal:
        principal = await principal_of(request)
        hub.auth.authorize_read(principal, agent_id)
        return principal

    async def reviewer(request: Request, agent_id: str) -> Principal:
        principal = await principal_of(request)
        authorize_review(principal, agent_id)
        return principal

    async def writer(request: Request, agent_id: str) -> Principal:
        principal = await principal_of(request)
        hub.auth.authorize_write(principal, agent_id)
        return principal

    async def read_body(request: Request) -> bytes:
        check_json_content_type(request.headers.get("content-type"))
        cap = hub.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise HubError(413, f"body exceeds {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise HubError(413, f"body exceeds {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def call(fn: Callable[..., _T], *args: Any) -> Any:
        return run_in_threadpool(fn, *args)

    return _Deps(hub, principal_of, reader, reviewer, writer, read_body, call)


def _errors(app: FastAPI, hub: Hub) -> None:
    """One handler per error kind: every error answers the hub's ErrorBody."""

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, exc: HubError) -> Response:
        if 400 <= exc.status < 500 or exc.status == 503:
            principal: Principal | None = getattr(request.state, "principal", None)
            hub.reject(
                exc.status,
                exc.message,
                request.path_params.get("agent_id"),
                principal.instance_id if principal else None,
                endpoint_label(request.url.path),
            )
        response = _json(orjson.dumps(exc.body()), exc.status)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> Response:
        # Authentication and authorization fail the same way on every route.
        return await _hub_error(request, HubError(exc.status, exc.message))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": "", "msg": "invalid request"}
        return await _hub_error(request, HubError(422, f"{first['loc']}: {first['msg']}", details))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        body = orjson.dumps({"error": {"status": exc.status_code, "message": str(exc.detail)}})
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        return Response(body, exc.status_code, headers=exc.headers, media_type="application/json")



def _ingest_routes(app: FastAPI, deps: _Deps) -> None:
    """Ingestion: events, batches, check-ins (HTTP) and the WebSocket."""
    hub = deps.hub
    writer = deps.writer
    read_body = deps.read_body
    call = deps.call

    async def ingest(request: Request, agent_id: str, kind: Kind) -> Response:
        from experience_sync.hub.engine import IngestMeta

        principal = await writer(request, agent_id)
        body = await read_body(request)
        meta = IngestMeta(
            protocol=header_label(
                "X-Experience-Sync-Protocol", request.headers.get("x-experience-sync-protocol")
            ) or DEFAULT_PROTOCOL[kind],
            transport=header_label(
                "X-Experience-Sync-Transport", request.headers.get("x-experience-sync-transport")
            ) or "https",
            backlog=backlog_header(request.headers.get("x-experience-sync-backlog")),
        )
        encoding = request.headers.get("content-encoding")

        def work() -> bytes:
            raw = decode_body(body, encoding, hub.limits.max_decompressed_bytes)
            result = hub.ingest(principal, agent_id, kind, raw, meta)
            return result.model_dump_json().encode()

        with hub.admit(agent_id):
            return _json(await call(work))

    unit_doc = {"description": "MergeResult, sent once the unit is committed."}

    @app.post("/v1/agents/{agent_id}/events", response_model=MergeResult, tags=["ingest"],
              openapi_extra=body_schema("EventsRequest"), responses={200: unit_doc, **unit_errors("EventsRequest")})
    async def post_events(agent_id: str, request: Request) -> Response:
        """Streaming: merge a few events (``EventsRequest``)."""
        return await ingest(request, agent_id, "events")

    @app.post("/v1/agents/{agent_id}/batches", response_model=MergeResult, tags=["ingest"],
              openapi_extra=body_schema("ExperienceBatch"), responses={200: unit_doc, **unit_errors("ExperienceBatch")})
    async def post_batch(agent_id: str, request: Request) -> Response:
        """Lumped: merge an ``ExperienceBatch`` (``Content-Encoding: gzip|zstd`` accepted)."""
        return await ingest(request, agent_id, "batch")

    @app.post("/v1/agents/{agent_id}/checkins", response_model=MergeResult, tags=["ingest"],
              openapi_extra=body_schema("CheckIn"), responses={200: unit_doc, **unit_errors("CheckIn")})
    async def post_checkin(agent_id: str, request: Request) -> Response:
        """Check-in: merge a ``CheckIn`` (full state or summary)."""
        return await ingest(request, agent_id, "checkin")

    @app.websocket("/v1/agents/{agent_id}/ws")
    async def websocket(websocket: WebSocket, agent_id: str) -> None:
        """Frames ``{id, kind, payload, meta?}`` answered by acks ``{id, ok, result|error}``."""
        token = bearer_token(websocket.headers) or websocket.query_params.get("access_token")
        try:
            principal = await run_in_threadpool(hub.auth.authenticate, token)
            hub.auth.authorize_write(principal, agent_id)
        except AuthError as exc:
            hub.reject(exc.status, exc.message, agent_id, None, "ws")
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(
                    _json(orjson.dumps(HubError(exc.status, exc.message).body()), exc.status)
                )
            else:
                await websocket.close(code=1008, reason=exc.message[:120])
            return
        await websocket.accept()
        hub.metrics.websocket_connections.inc()
        checked = time.monotonic()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if time.monotonic() - checked >= WS_REAUTH_SECONDS:
                    # A token revoked while its connection is open stops
                    # working at the next frame after this interval; the
                    # unanswered frame stays in the instance's outbox.
                    try:
                        await run_in_threadpool(hub.auth.authenticate, token)
                    except AuthError as exc:
                        hub.reject(exc.status, exc.message, agent_id, principal.instance_id, "ws")
                        await websocket.close(code=1008, reason=exc.message[:120])
                        break
                    checked = time.monotonic()
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                ack = await run_in_threadpool(hub.handle_frame, principal, agent_id, raw)
                await websocket.send_bytes(ack) if isinstance(raw, bytes) else await websocket.send_text(ack.decode())
        except WebSocketDisconnect:
            pass
        finally:
            hub.metrics.websocket_connections.dec()



def _read_routes(app: FastAPI, deps: _Deps) -> None:
    """Reads: state, memories, skills, knowledge, instances."""
    hub = deps.hub
    reader = deps.reader
    call = deps.call

    @app.get("/v1/agents/{agent_id}/state", response_model=AgentState, tags=["read"],
             responses=QUERY_ERRORS)
    async def get_state(
        agent_id: str, request: Request, since: int | None = Query(None, ge=0, le=MAX_COUNT)
    ) -> Response:
        """The agent's state, or what changed after cursor ``since``. Unknown agent: empty state.

        A ``since`` beyond the agent's cursor is a 422: no commit made it, so
        the client's cursor is corrupt or from another hub's store.
        """
        await reader(request, agent_id)
        state = await call(hub.engine.state, agent_id, since)
        if since is not None and since > state.cursor:
            raise query_error("since", f"cursor {since} is beyond the agent's cursor {state.cursor}")
        return _json(state.model_dump_json())

    @app.get("/v1/agents/{agent_id}/memories", response_model=MemoryPage, tags=["read"],
             responses=QUERY_ERRORS)
    async def get_memories(
        agent_id: str,
        request: Request,
        q: str | None = None,
        offset: int = Query(0, ge=0, le=MAX_COUNT),
        limit: int = Query(50, ge=1, le=1000),
    ) -> Response:
        """Merged memories, optionally matching text ``q``, paged by ``offset``/``limit``.

        An ``offset`` beyond ``total`` is a 422 (``offset == total`` is the empty page after the last).
        """
        await reader(request, agent_id)
        items, total = await call(hub.engine.memories, agent_id, q, offset, limit)
        if offset > total:
            raise query_error("offset", f"offset {offset} is beyond the last memory (total {total})")
        page = MemoryPage(items=items, total=total, offset=offset, limit=limit)
        return _json(page.model_dump_json())

    @app.get("/v1/agents/{agent_id}/skills", response_model=list[Skill], tags=["read"],
             responses=READ_ERRORS)
    async def get_skills(agent_id: str, request: Request) -> Response:
        """Accumulated skills with their learning curves."""
        await reader(request, agent_id)
        return _json(LIST_ADAPTERS[Skill].dump_json(await call(hub.engine.skills, agent_id)))

    @app.get("/v1/agents/{agent_id}/knowledge", response_model=list[KnowledgeItem], tags=["read"],
             responses=QUERY_ERRORS)
    async def get_knowledge(
        agent_id: str,
        request: Request,
        status: Literal["pending", "integrated"] | None = None,
    ) -> Response:
        """Knowledge items, integrated and pending (or only one ``status``)."""
        await reader(request, agent_id)
        items = await call(hub.engine.knowledge, agent_id, status)
        return _json(LIST_ADAPTERS[KnowledgeItem].dump_json(items))

    @app.get("/v1/agents/{agent_id}/instances", response_model=list[InstanceStatus], tags=["read"],
             responses=READ_ERRORS)
    async def get_instances(agent_id: str, request: Request) -> Response:
        """Each instance's last sync, lag, backlog, protocol and transport."""
        await reader(request, agent_id)
        return _json(LIST_ADAPTERS[InstanceStatus].dump_json(await call(hub.engine.instances, agent_id)))



def _search_routes(app: FastAPI, deps: _Deps) -> None:
    """Ranked search, GET and POST."""
    hub = deps.hub
    reader = deps.reader
    read_body = deps.read_body
    call = deps.call

    def search_query(fields: dict[str, Any], prefix: str) -> SearchQuery:
        try:
            return SearchQuery.model_validate(fields)
        except ValidationError as exc:
            details = validation_details(exc)
            for d in details:
                d["loc"] = prefix + d["loc"]
            raise HubError(422, f"{details[0]['loc']}: {details[0]['msg']}", details) from None

    def split(values: list[str]) -> list[str]:
        return [v.strip() for raw in values for v in raw.split(",") if v.strip()]

    @app.get("/v1/agents/{agent_id}/search", response_model=SearchResults, tags=["read"],
             responses=QUERY_ERRORS)
    async def search(
        agent_id: str,
        request: Request,
        q: str = Query(..., description="The query text (1-2,000 characters)."),
        k: int = Query(5, description="How many hits (1-100)."),
        kinds: list[str] = Query(
            ["memory,knowledge,skill"], description="Comma-separated: memory, knowledge, skill."
        ),
        tags: list[str] = Query([], description="Comma-separated; memories carrying all of them."),
        min_confidence: float | None = Query(None, description="0-1."),
        knowledge_status: str = Query("integrated", description="integrated, pending or all."),
    ) -> Response:
        """Ranked search (BM25 fused with vectors) over memories, knowledge and skills."""
        await reader(request, agent_id)
        fields: dict[str, Any] = {
            "q": q, "k": k, "kinds": split(kinds), "tags": split(tags),
            "min_confidence": min_confidence, "knowledge_status": knowledge_status,
        }
        query = search_query(fields, "query.")
        results = await call(hub.engine.search, agent_id, query)
        return _json(results.model_dump_json())

    @app.post("/v1/agents/{agent_id}/search", response_model=SearchResults, tags=["read"],
              openapi_extra=body_schema("SearchQuery"), responses=SEARCH_BODY_ERRORS)
    async def search_post(agent_id: str, request: Request) -> Response:
        """The same search with a JSON ``SearchQuery`` body, for long queries. Read scope."""
        await reader(request, agent_id)
        body = await read_body(request)
        encoding = request.headers.get("content-encoding")

        def work() -> bytes:
            raw = decode_body(body, encoding, hub.limits.max_decompressed_bytes)
            try:
                fields = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise HubError(400, f"body is not valid JSON: {exc}") from None
            if not isinstance(fields, dict):
                raise HubError(422, "(body): must be a JSON object (a SearchQuery)")
            query = search_query(fields, "")
            return hub.engine.search(agent_id, query).model_dump_json().encode()

        return _json(await call(work))



def _review_routes(app: FastAPI, deps: _Deps) -> None:
    """The review queue and its decisions."""
    hub = deps.hub
    reader = deps.reader
    reviewer = deps.reviewer
    read_body = deps.read_body
    call = deps.call

    @app.get("/v1/agents/{agent_id}/reviews", response_model=list[Review], tags=["reviews"],
             responses=QUERY_ERRORS)
    async def get_reviews(
        agent_id: str,
        request: Request,
        status: Literal["open", "accepted", "rejected", "all"] = "open",
    ) -> Response:
        """Conflicts queued for manual review (``status=all`` for every one)."""
        await reader(request, agent_id)
        items = await call(hub.engine.reviews, agent_id, None if status == "all" else status)
        return _json(LIST_ADAPTERS[Review].dump_json(items))

    @app.post("/v1/agents/{agent_id}/reviews/{review_id}", response_model=Review, tags=["reviews"],
              openapi_extra=body_schema("ReviewDecision"),
              responses=REVIEW_DECISION_ERRORS)
    async def decide_review(agent_id: str, review_id: str, request: Request) -> Response:
        """Accept (apply the proposed side) or reject a queued conflict. Needs a review or write token."""
        await reviewer(request, agent_id)
        body = await read_body(request)
        encoding = request.headers.get("content-encoding")

        def work() -> Review:
            raw = decode_body(body, encoding, hub.limits.max_decompressed_bytes)
            try:
                decision = ReviewDecision.model_validate(orjson.loads(raw))
            except orjson.JSONDecodeError as exc:
                raise HubError(400, f"body is not valid JSON: {exc}") from None
            except ValidationError as exc:
                details = validation_details(exc)
                raise HubError(422, f"{details[0]['loc']}: {details[0]['msg']}", details) from None
            try:
                return hub.engine.decide_review(agent_id, review_id, decision.decision == "accept")
            except KeyError:
                raise HubError(404, f"no review {review_id!r} for agent {agent_id!r}") from None
            except ValueError as exc:
                raise HubError(409, str(exc)) from None

        review = await call(work)
        return _json(review.model_dump_json())



def _observability_routes(app: FastAPI, deps: _Deps) -> None:
    """The event stream, metrics and health."""
    hub = deps.hub
    principal_of = deps.principal_of

    @app.get("/v1/events", tags=["observability"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"},
                        **error_responses(401, 403, notes={
                            403: "`agent_id` names another agent than the token's."})})
    async def get_events(
        request: Request,
        agent_id: str | None = None,
        type: list[str] | None = Query(None),
    ) -> StreamingResponse:
        """Server-Sent Events of observability events; a token sees its own agent's only."""
        principal = await principal_of(request)
        agent = agent_id
        if not principal.unrestricted:
            if agent_id is not None and agent_id != principal.agent_id:
                raise HubError(403, f"token is for agent {principal.agent_id!r}, not {agent_id!r}")
            agent = principal.agent_id
        prefixes = tuple(type or ())

        def accept(event: Any) -> bool:
            if agent is not None and event.agent_id != agent:
                return False
            return not prefixes or any(
                event.type == p or event.type.startswith(p.rstrip(".") + ".") for p in prefixes
            )

        return StreamingResponse(
            hub.events.stream(accept),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics", tags=["observability"], response_class=Response,
             responses=error_responses(401))
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this hub; any valid token, of either scope (no agent ids in labels)."""
        # Hub-wide figures, not one agent's: the token's agent is not checked.
        await principal_of(request)
        hub.metrics.sse_subscribers.set(hub.events.subscribers)
        return Response(hub.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/healthz", response_model=Health, tags=["observability"])
    async def healthz() -> Health:
        """Liveness: the hub answers."""
        return Health(auth=hub.auth.enabled)

    @app.get("/readyz", response_model=Readiness, tags=["observability"],
             responses=error_responses(503, notes={503: "The start-up warm-up is loading agents."}))
    async def readyz() -> Readiness | Response:
        """Readiness: 200 once the start-up warm-up has loaded the stored agents, 503 until then.

        A request for an agent still loading waits for its load (a page of
        memories, the skills, the knowledge and a search may be read from
        the store at once); a load balancer can send traffic to another hub
        until this answers 200.
        """
        engine = hub.engine
        if not hub.ready:
            loading = f", loading agent {hub.warming!r}" if hub.warming else ""
            error = HubError(
                503, f"the hub is loading its agents ({len(engine.loaded_agents())} loaded{loading})"
            )
            # An answer about the hub, not a refused request: no hub.rejected
            # event (a probe each second of a long warm-up would log each).
            response = _json(orjson.dumps(error.body()), 503)
            response.headers["Retry-After"] = "1"
            return response
        return Readiness(
            agents_loaded=len(engine.loaded_agents()), memories_loaded=engine.loaded_memories
        )



def create_app(hub: Hub) -> FastAPI:
    """The hub's ASGI application; plugins add routes through ``experience_sync_register_hub_routes``."""
    app = FastAPI(
        title="experience-sync hub",
        version="1",
        summary="Instances sync experiences into source agents; see docs/wire-protocol.md.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.hub = hub
    app.add_middleware(_MetricsMiddleware, hub=hub)

    _errors(app, hub)
    deps = _deps(hub)
    for routes in (_ingest_routes, _read_routes, _search_routes, _review_routes,
                   _observability_routes, forget_routes):
        routes(app, deps)
    mount_console(app, hub)
    install_openapi(app)
    hub.pm.hook.experience_sync_register_hub_routes(app=app, hub=hub)
    return app


__all__ = [
    "Hub",
    "HubError",
    "HubLimits",
    "MemoryPage",
    "ReviewDecision",
    "create_app",
]
