"""The hub's MCP server over streamable HTTP.

Tools: ``sync_experiences`` and ``get_state`` (instances syncing), and
``search_experiences`` and ``get_source_agent`` (any MCP client consulting
the source agent; see :mod:`experience_sync_mcp.consult`).

Mounted at ``/mcp`` on the hub app by :func:`mount`. Requests are authenticated
exactly like the HTTP API: the ``Authorization: Bearer`` header of the MCP HTTP
request is checked by the hub's authenticator before the MCP layer sees it
(401 with the hub's JSON error body if missing, unknown or revoked), and each
tool call is authorized for its ``agent_id`` and the unit's instance (a
refusal is a tool error tagged ``[403]``). Tool errors carry the HTTP-like
status in brackets (``[422] ...``) so clients can tell retryable from final.

The server is stateless (no MCP session survives between HTTP requests) and
answers JSON rather than SSE: each tool call is one POST, like the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio.to_thread

# The 1.x SDK's FastMCP; on 2.x (where it became MCPServer with another API)
# this import fails and the plugin serves no /mcp endpoint (see plugin.py).
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent
from pydantic import WithJsonSchema

from experience_sync.api import (
    AuthError,
    HubError,
    IngestMeta,
    Principal,
    SearchQuery,
    SearchResults,
)
from experience_sync_mcp.consult import (
    SEARCH_SCHEMAS,
    SOURCE_AGENT_SCHEMAS,
    SourceAgent,
    ToolArgumentError,
    parse_search,
    parse_source_agent,
    search_text,
    summarize,
    summary_text,
)
from experience_sync_mcp.transport import MOUNT_PATH

log = logging.getLogger("experience_sync_mcp")

__all__ = ["MOUNT_PATH", "McpEndpoint", "build_server", "mount"]

_SCOPE_KEY = "experience_sync_principal"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DEFAULT_PROTOCOL = {"events": "streaming", "batch": "lumped", "checkin": "check_in"}


def _tool_error(status: int, message: str) -> ToolError:
    return ToolError(f"[{status}] {message}")


def _principal(ctx: Context[Any, Any, Any]) -> Principal:
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    principal = scope.get(_SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(principal, Principal):
        # Only reachable if the server is served without :class:`McpEndpoint`.
        raise _tool_error(401, "request was not authenticated")
    return principal


def _ingest_meta(kind: str, meta: dict[str, Any] | None) -> IngestMeta:
    meta = meta or {}
    backlog = meta.get("backlog")
    if isinstance(backlog, str) and backlog.isdigit():
        backlog = int(backlog)
    return IngestMeta(
        protocol=str(meta.get("protocol") or _DEFAULT_PROTOCOL[kind]),
        transport="mcp",
        backlog=backlog if isinstance(backlog, int) and backlog >= 0 else None,
    )


def build_server(hub: Any) -> FastMCP[Any]:
    """A FastMCP server whose tools ingest into, and read from, ``hub`` (a hub ``Hub``)."""
    # FastMCP's constructor configures the root logger (a rich handler at
    # INFO) when it has none; the hub's logging is the application's choice.
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    server: FastMCP[Any] = FastMCP(
        "experience-sync hub",
        instructions=(
            "Sync an agent instance's experiences (memories, skills, knowledge) into "
            "its source agent with sync_experiences; read the merged source agent "
            "with get_state. To consult the source agent, search what it learned "
            "with search_experiences and read who it is (verified knowledge, skills "
            "and how reliable they are, characteristics) with get_source_agent."
        ),
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        # The hub's body limit, as on its HTTP routes (a larger request is a 413,
        # which makes the instance split the unit).
        max_request_body_size=hub.limits.max_body_bytes,
        # Every request carries a bearer token checked before the MCP layer, so
        # the SDK's Host/Origin checks (meant for unauthenticated local servers)
        # would only break hubs served under their real host name.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)

    def refuse(status: int, message: str, agent_id: str, principal: Principal) -> ToolError:
        if 400 <= status < 500:
            hub.reject(status, message, agent_id, principal.instance_id, "mcp")
        return _tool_error(status, message)

    @server.tool(
        name="sync_experiences",
        description=(
            "Deliver a unit of experiences to the hub and return what it merged "
            "(a MergeResult). kind 'events' takes an EventsRequest, 'batch' an "
            "ExperienceBatch, 'checkin' a CheckIn (JSON object or JSON text; see "
            "`experience-sync schema`). meta may carry the instance's 'backlog' and "
            "'protocol'. Re-sending a unit has no further effect."
        ),
        structured_output=True,
    )
    async def sync_experiences(
        agent_id: str,
        kind: Literal["events", "batch", "checkin"],
        payload: dict[str, Any] | str,
        ctx: Context[Any, Any, Any],
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        principal = _principal(ctx)
        ingest_meta = _ingest_meta(kind, meta)

        def work() -> dict[str, Any]:
            result = hub.ingest(principal, agent_id, kind, payload, ingest_meta)
            return dict(result.model_dump(mode="json"))

        try:
            return await anyio.to_thread.run_sync(work)
        except (HubError, AuthError) as exc:
            raise refuse(exc.status, exc.message, agent_id, principal) from None
        except Exception as exc:  # the hub failed, not the request: worth a retry
            log.exception("MCP %s ingestion for agent %s failed", kind, agent_id)
            raise _tool_error(500, f"hub failed to ingest: {type(exc).__name__}") from exc

    @server.tool(
        name="get_state",
        description=(
            "Read the merged source agent (memories, skills, knowledge, reviews, "
            "characteristics, stats) as an AgentState; with `since`, only what "
            "changed after that cursor."
        ),
        structured_output=True,
    )
    async def get_state(
        agent_id: str, ctx: Context[Any, Any, Any], since: int | None = None
    ) -> dict[str, Any]:
        principal = _principal(ctx)
        try:
            hub.auth.authorize_read(principal, agent_id)
        except AuthError as exc:
            raise refuse(exc.status, exc.message, agent_id, principal) from None
        if since is not None and since < 0:
            raise refuse(422, "since must be a non-negative cursor", agent_id, principal)
        state = await anyio.to_thread.run_sync(lambda: hub.engine.state(agent_id, since))
        return dict(state.model_dump(mode="json"))

    def reader(agent_id: str, ctx: Context[Any, Any, Any]) -> Principal:
        principal = _principal(ctx)
        try:
            hub.auth.authorize_read(principal, agent_id)
        except AuthError as exc:
            raise refuse(exc.status, exc.message, agent_id, principal) from None
        return principal

    @server.tool(
        name="search_experiences",
        description=(
            "Search what the source agent learned across its fleet of instances "
            "(merged memories, integrated knowledge, skills) for text relevant to q, "
            "ranked best first (BM25 fused with vectors). Returns SearchResults as "
            "structured content, and the hits' own words as text a prompt can use. "
            "Pending (not yet verified) knowledge only with knowledge_status "
            "'pending' or 'all'."
        ),
        structured_output=True,
    )
    async def search_experiences(
        agent_id: str,
        q: str,
        ctx: Context[Any, Any, Any],
        k: Annotated[Any, WithJsonSchema(SEARCH_SCHEMAS["k"])] = 5,
        kinds: Annotated[Any, WithJsonSchema(SEARCH_SCHEMAS["kinds"])] = None,
        tags: Annotated[Any, WithJsonSchema(SEARCH_SCHEMAS["tags"])] = None,
        min_confidence: Annotated[Any, WithJsonSchema(SEARCH_SCHEMAS["min_confidence"])] = None,
        knowledge_status: Annotated[
            Any, WithJsonSchema(SEARCH_SCHEMAS["knowledge_status"])
        ] = "integrated",
    ) -> Annotated[CallToolResult, SearchResults]:
        principal = reader(agent_id, ctx)
        try:
            query: SearchQuery = parse_search(q, k, kinds, tags, min_confidence, knowledge_status)
        except ToolArgumentError as exc:
            raise refuse(422, str(exc), agent_id, principal) from None
        try:
            results = await anyio.to_thread.run_sync(lambda: hub.engine.search(agent_id, query))
        except HubError as exc:
            raise refuse(exc.status, exc.message, agent_id, principal) from None
        except Exception as exc:
            log.exception("MCP search for agent %s failed", agent_id)
            raise _tool_error(500, f"hub failed to search: {type(exc).__name__}") from exc
        return CallToolResult(
            content=[TextContent(type="text", text=search_text(results))],
            structuredContent=results.model_dump(mode="json"),
        )

    @server.tool(
        name="get_source_agent",
        description=(
            "Who the source agent is, merged across its instances: counts (memories, "
            "skills, integrated and pending knowledge, characteristics, open reviews, "
            "instances), its integrated knowledge (most confident first), its skills "
            "(most used first) each with a reliability line ('web_search: succeeded "
            "in 92% of 25 uses across the fleet'), and its characteristics. With "
            "full=true also the whole AgentState. The text block is a prompt-ready "
            "summary."
        ),
        structured_output=True,
    )
    async def get_source_agent(
        agent_id: str,
        ctx: Context[Any, Any, Any],
        full: Annotated[Any, WithJsonSchema(SOURCE_AGENT_SCHEMAS["full"])] = False,
        top_skills: Annotated[Any, WithJsonSchema(SOURCE_AGENT_SCHEMAS["top_skills"])] = 10,
        max_knowledge: Annotated[Any, WithJsonSchema(SOURCE_AGENT_SCHEMAS["max_knowledge"])] = 20,
    ) -> Annotated[CallToolResult, SourceAgent]:
        principal = reader(agent_id, ctx)
        try:
            options = parse_source_agent(full, top_skills, max_knowledge)
        except ToolArgumentError as exc:
            raise refuse(422, str(exc), agent_id, principal) from None

        def work() -> SourceAgent:
            state = hub.engine.state(agent_id)
            return summarize(state, len(hub.engine.instances(agent_id)), options)

        summary = await anyio.to_thread.run_sync(work)
        return CallToolResult(
            content=[TextContent(type="text", text=summary_text(summary))],
            structuredContent=summary.model_dump(mode="json"),
        )

    return server


class McpEndpoint:
    """The ASGI app served at ``/mcp``: bearer authentication, then the MCP server.

    The SDK's session manager must run (it owns a task group) while requests
    are served. When the hub app's lifespan runs, :meth:`lifespan` runs it;
    when the server runs the app without a lifespan, the first request starts
    it on the serving event loop, and the loop's shutdown cancels it. Either
    way a fresh server and session manager is made per event loop (the SDK's
    session manager can run only once), so a hub can be stopped and started
    again.
    """

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._handler: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._handler_loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[None] | None = None
        self._lazy_task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the MCP session manager for as long as this context is open."""
        server = build_server(self.hub)
        server.streamable_http_app()  # creates the session manager
        manager = server.session_manager
        async with manager.run():
            self._handler = manager.handle_request
            self._handler_loop = asyncio.get_running_loop()
            try:
                yield
            finally:
                self._handler = None
                self._handler_loop = None

    async def _run_until_cancelled(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self.lifespan():
                ready.set_result(None)
                await asyncio.Event().wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def _current_handler(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        loop = asyncio.get_running_loop()
        if self._handler is not None and self._handler_loop is loop:
            return self._handler
        if self._starting is None or self._starting.get_loop() is not loop:
            self._starting = loop.create_future()
            self._lazy_task = loop.create_task(self._run_until_cancelled(self._starting))
        await asyncio.shield(self._starting)
        assert self._handler is not None
        return self._handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request: authenticate its bearer token, then run it as MCP.

        A token the hub refuses is answered with its error and reported as a
        rejection; an accepted request carries its principal in the scope to
        the tools. Other scopes (lifespan, WebSocket) are ignored.
        """
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        try:
            principal = await anyio.to_thread.run_sync(self.hub.auth.authenticate, token)
        except AuthError as exc:
            self.hub.reject(exc.status, exc.message, None, None, "mcp")
            await _send_error(send, exc.status, exc.message)
            return
        handler = await self._current_handler()
        scope[_SCOPE_KEY] = principal
        await handler(scope, receive, send)


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"status": status, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="experience-sync"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def mount(app: Any, hub: Any, path: str = MOUNT_PATH) -> McpEndpoint:
    """Serve the MCP endpoint at ``path`` on the hub's FastAPI ``app``.

    The app's lifespan is wrapped so the MCP session manager starts and stops
    with it when the server runs lifespans (else the first request starts it).
    """
    from starlette.routing import Route

    endpoint = McpEndpoint(hub)
    app.router.routes.append(Route(path, endpoint=endpoint, methods=["GET", "POST", "DELETE"]))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with endpoint.lifespan(), inner(asgi_app) as state:
            yield state

    app.router.lifespan_context = lifespan
    return endpoint
