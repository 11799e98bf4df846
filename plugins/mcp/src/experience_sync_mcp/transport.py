"""The ``mcp`` transport: ships units by calling the hub's ``sync_experiences`` tool.

The instance's worker thread is synchronous; the MCP SDK is asynchronous. The
transport therefore owns one asyncio loop in a daemon thread and, on that
loop, one *connection task* that holds the MCP session open (the SDK's anyio
task groups must be entered and left by the same task, so every call goes
through this task's queue). A call that fails on the connection tears the
session down; the next call opens a new one, so a restarted hub is picked up
without any action from the caller. Each call is retried within its
deadline with the shared backoff policy (:mod:`experience_sync.client.retry`);
failures are classified:

- connection errors, timeouts, HTTP 408/429/5xx (not 501) and tool errors
  tagged ``[408]``, ``[429]`` or ``[5xx]`` raise :class:`RetryableError`;
- other HTTP 4xx (401 unauthenticated, 403 wrong agent or instance, 404 no
  MCP endpoint or unknown tool, 413, 422 invalid arguments) and tool errors
  tagged with them raise :class:`RejectedError` with that status.

Works with the 1.x SDK (``mcp.client.streamable_http`` + ``ClientSession``) and,
when installed, the 2.x ``mcp.Client`` (detected by import).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from experience_sync.api import (
    AgentState,
    Backoff,
    MergeResult,
    OnRetry,
    RejectedError,
    RetryableError,
    SyncRequest,
    Transport,
    TransportError,
    is_retryable_status,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

# The 2.x SDK renamed McpError, added ``mcp.Client`` and moved to httpx2; the
# transport detects which SDK is installed by what it can import.
try:
    from mcp.shared.exceptions import McpError
except ImportError:  # pragma: no cover - 2.x SDK
    from mcp.shared.exceptions import (  # type: ignore[attr-defined,no-redef,unused-ignore]
        MCPError as McpError,
    )
try:
    from mcp import Client as _Client2  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - depends on the installed SDK
    _Client2 = None
_http: Any = httpx
_STATUS_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPStatusError,)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, OSError, TimeoutError)
if _Client2 is not None:  # pragma: no cover - 2.x SDK
    import httpx2  # type: ignore[import-not-found,unused-ignore]

    _http = httpx2
    _STATUS_ERRORS += (httpx2.HTTPStatusError,)
    _CONNECTION_ERRORS += (httpx2.TransportError,)

__all__ = ["McpTransport", "classify_status"]

#: The path of the hub's MCP endpoint (see :mod:`experience_sync_mcp.server`).
MOUNT_PATH = "/mcp"

_STATUS_TAG = re.compile(r"\[(\d{3})\]")

#: How long opening a session may take before the call counts as failed.
DEFAULT_CONNECT_TIMEOUT = 10.0


def classify_status(status: int, message: str) -> TransportError:
    """The error for an HTTP-like status: retryable for 408, 429 and 5xx but 501."""
    if is_retryable_status(status):
        return RetryableError(message, status_code=status)
    return RejectedError(message, status_code=status)


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    # anyio task groups wrap the real failure (an httpx error raised in the
    # SDK's writer task) in exception groups; the leaves say what happened.
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaf_exceptions(inner))
        return out
    return [exc]


def _map_connection_error(exc: BaseException, http_status: int | None = None) -> TransportError:
    leaves = _leaf_exceptions(exc)
    if http_status is not None and any(isinstance(leaf, McpError) for leaf in leaves):
        # The 2.x SDK turns an HTTP error into a JSON-RPC error without the
        # status; the response hook kept it.
        return _http_status_error(http_status)
    for leaf in leaves:
        if isinstance(leaf, TransportError):
            return leaf
        if isinstance(leaf, _STATUS_ERRORS):
            status = leaf.response.status_code  # type: ignore[attr-defined]
            detail = _error_detail(leaf.response)  # type: ignore[attr-defined]
            hint = " (check transport.mcp.auth_token)" if status in (401, 403) else ""
            return classify_status(status, f"MCP endpoint answered {status}: {detail}{hint}")
    for leaf in leaves:
        if isinstance(leaf, _CONNECTION_ERRORS):
            return RetryableError(f"MCP connection failed: {type(leaf).__name__}: {leaf}")
        if isinstance(leaf, McpError):
            if "session terminated" in str(leaf).lower():
                # The SDK reports an HTTP 404 this way; a stateless hub has no
                # sessions to expire, so it means there is no endpoint here.
                return RejectedError(
                    "MCP endpoint answered 404: no MCP server at this URL "
                    "(check transport.mcp.server)",
                    status_code=404,
                )
            return RetryableError(f"MCP session error: {leaf}")
    first = leaves[0] if leaves else exc
    return RetryableError(f"MCP connection failed: {type(first).__name__}: {first}")


def _http_status_error(status: int) -> TransportError:
    hint = " (check transport.mcp.auth_token)" if status in (401, 403) else ""
    if status == 404:
        hint = ": no MCP server at this URL (check transport.mcp.server)"
    return classify_status(status, f"MCP endpoint answered {status}{hint}")


def _error_detail(response: Any) -> str:
    # The hub answers ``{"error": {"status", "message"}}``; show its message.
    with contextlib.suppress(Exception):
        body = json.loads(response.read())
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("message", body["error"]))
        return str(body)
    return str(response.reason_phrase)


def _result_payload(result: Any) -> dict[str, Any]:
    """The tool result as a dict, or the error it stands for."""
    is_error = getattr(result, "isError", None)
    if is_error is None:  # 2.x spells fields in snake case
        is_error = getattr(result, "is_error", False)
    texts = [getattr(c, "text", "") for c in getattr(result, "content", []) or []]
    text = "\n".join(t for t in texts if t)
    if is_error:
        match = _STATUS_TAG.search(text)
        if match:
            raise classify_status(int(match.group(1)), f"hub refused the tool call: {text}")
        if "validation error" in text.lower():
            raise RejectedError(f"hub refused the tool arguments: {text}", status_code=422)
        # An unknown tool, or a server that is not an experience-sync hub: a
        # problem of the target, not of the events (404 keeps them queued).
        raise RejectedError(f"the MCP server refused the call: {text or 'no detail'} "
                            "(check transport.mcp.server and tool_name)", status_code=404)
    structured = getattr(result, "structuredContent", None)
    if structured is None:
        structured = getattr(result, "structured_content", None)
    if isinstance(structured, dict):
        return structured
    try:
        parsed = json.loads(text)
    except ValueError:
        raise RejectedError(f"tool answered without structured content: {text[:200]!r}") from None
    if not isinstance(parsed, dict):
        raise RejectedError(f"tool answered {type(parsed).__name__}, expected an object")
    return parsed


@dataclass
class _Job:
    name: str
    arguments: dict[str, Any]
    timeout: float
    future: asyncio.Future[Any] = field(repr=False)


class McpTransport(Transport):
    """Calls the hub's MCP tools over streamable HTTP, keeping one session open.

    :param server: the hub's MCP endpoint, e.g. ``http://127.0.0.1:8080/mcp``; a URL
        without a path gets ``/mcp``.
    :param agent_id: the source agent units are for (used by :meth:`fetch_state`).
    :param auth_token: the bearer token the hub issued for this instance.
    :param tool_name: the ingestion tool (``sync_experiences``).
    :param state_tool_name: the read tool (``get_state``).
    :param headers: extra HTTP headers sent with every MCP request.
    :param connect_timeout: how long opening a session may take.
    """

    name = "mcp"

    def __init__(
        self,
        server: str,
        *,
        agent_id: str | None = None,
        auth_token: str | None = None,
        tool_name: str = "sync_experiences",
        state_tool_name: str = "get_state",
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        # A bare hub URL (``https://hub.example``, as ``initialize_sync(endpoint=...)``
        # gives every transport) means the hub's MCP endpoint.
        if urlsplit(server).path in ("", "/"):
            server = server.rstrip("/") + MOUNT_PATH
        self.server = server
        self.agent_id = agent_id
        self.tool_name = tool_name
        self.state_tool_name = state_tool_name
        self.connect_timeout = connect_timeout
        self._headers = dict(headers or {})
        if auth_token:
            self._headers["Authorization"] = f"Bearer {auth_token}"
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._conn_task: asyncio.Task[None] | None = None
        self._closed = False
        #: How many sessions were opened (1 + reconnects); for status and tests.
        self.sessions_opened = 0
        self._http_status: int | None = None
        #: Set by the instance's worker to count and report retries.
        self.on_retry: OnRetry | None = None

    # ------------------------------------------------------------------ public API

    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        """Call the ingestion tool with the unit and return the hub's MergeResult."""
        arguments = {
            "agent_id": request.agent_id,
            "kind": request.kind,
            "payload": request.payload.model_dump(mode="json"),
        }
        if request.meta:
            arguments["meta"] = dict(request.meta)
        data = self._call(self.tool_name, arguments, timeout)
        try:
            return MergeResult.model_validate(data)
        except ValueError as exc:
            raise RejectedError(f"tool answered something that is not a MergeResult: {exc}") from exc

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        """Call the read tool: the source agent's state (changes since ``since``)."""
        if self.agent_id is None:
            raise RejectedError("the mcp transport was created without an agent id")
        arguments: dict[str, Any] = {"agent_id": self.agent_id}
        if since is not None:
            arguments["since"] = since
        data = self._call(self.state_tool_name, arguments, timeout)
        return AgentState.model_validate(data)

    def close(self) -> None:
        """Close the session and stop the transport's loop thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        if not thread.is_alive():
            loop.close()

    # ------------------------------------------------------------------ loop thread

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                # Retryable: what was being sent stays in the outbox for the next run.
                raise RetryableError("the mcp transport is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="experience-sync-mcp", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _call(self, name: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
        # Retryable failures are tried again with the shared backoff policy
        # until the deadline; each new attempt opens a new session if needed.
        backoff = Backoff(time.monotonic() + timeout, self.on_retry)
        while True:
            left = backoff.remaining()
            if left <= 0:
                raise RetryableError(f"MCP call {name!r} got no answer within {timeout:.1f}s")
            try:
                return self._call_once(name, arguments, left)
            except RetryableError as exc:
                if self._closed:  # nothing to wait for
                    raise
                backoff.wait(exc)  # raises ``exc`` when the deadline leaves no room

    def _call_once(self, name: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
        loop = self._ensure_loop()
        future: Future[Any] = asyncio.run_coroutine_threadsafe(
            self._submit(name, arguments, timeout), loop
        )
        try:
            # The connection task enforces ``timeout`` on the call; the margin
            # covers opening a session first.
            result = future.result(timeout=timeout + self.connect_timeout + 1.0)
        except FutureTimeout:
            future.cancel()
            raise RetryableError(f"MCP call {name!r} timed out after {timeout:.1f}s") from None
        return _result_payload(result)

    async def _submit(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        job = _Job(name, arguments, timeout, asyncio.get_running_loop().create_future())
        if self._queue is None or self._conn_task is None or self._conn_task.done():
            self._queue = asyncio.Queue()
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._conn_task = asyncio.create_task(self._connection(self._queue, ready))
            try:
                await asyncio.wait_for(asyncio.shield(ready), timeout=self.connect_timeout)
            except asyncio.TimeoutError:
                self._conn_task.cancel()
                raise RetryableError(
                    f"could not open an MCP session with {self.server} "
                    f"within {self.connect_timeout:.0f}s"
                ) from None
        await self._queue.put(job)
        return await job.future

    async def _shutdown(self) -> None:
        if self._queue is not None and self._conn_task is not None and not self._conn_task.done():
            await self._queue.put(None)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                # wait_for cancels a call still in progress after the grace time;
                # its caller then gets a RetryableError instead of waiting.
                await asyncio.wait_for(self._conn_task, timeout=1.0)

    @contextlib.asynccontextmanager
    async def _open_session(self) -> AsyncIterator[Any]:
        timeout = _http.Timeout(self.connect_timeout, read=300.0)
        self._http_status = None

        async def on_response(response: Any) -> None:
            if response.status_code >= 400:
                self._http_status = response.status_code

        async with _http.AsyncClient(
            headers=self._headers, timeout=timeout, event_hooks={"response": [on_response]}
        ) as http:
            if _Client2 is not None:  # pragma: no cover - 2.x SDK only
                async with _Client2(streamable_http_client(self.server, http_client=http)) as c:
                    yield c
                return
            async with (
                streamable_http_client(
                    self.server, http_client=http, terminate_on_close=False
                ) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session

    async def _connection(
        self, queue: asyncio.Queue[_Job | None], ready: asyncio.Future[None]
    ) -> None:
        current: _Job | None = None
        try:
            async with self._open_session() as session:
                self.sessions_opened += 1
                ready.set_result(None)
                while True:
                    current = await queue.get()
                    if current is None:
                        return
                    if current.future.done():  # the caller gave up
                        current = None
                        continue
                    result = await self._call_tool(session, current)
                    if not current.future.done():
                        current.future.set_result(result)
                    current = None
        except BaseException as exc:
            error = _map_connection_error(exc, self._http_status)
            if not ready.done():
                ready.set_exception(error)
            pending = [current] if current is not None else []
            while not queue.empty():
                job = queue.get_nowait()
                if job is not None:
                    pending.append(job)
            for job in pending:
                if not job.future.done():
                    job.future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _call_tool(self, session: Any, job: _Job) -> Any:
        # 1.x takes the read timeout as a timedelta, 2.x as seconds.
        read_timeout: Any = job.timeout if _Client2 is not None else timedelta(seconds=job.timeout)
        try:
            return await session.call_tool(
                job.name, job.arguments, read_timeout_seconds=read_timeout
            )
        except McpError as exc:
            # A request timeout leaves the session usable; report it and go on.
            # An HTTP error status (2.x reports those as JSON-RPC errors) says more.
            status, self._http_status = self._http_status, None
            error = (
                _http_status_error(status)
                if status is not None
                else RetryableError(f"MCP call {job.name!r} failed: {exc}")
            )
            job.future.set_exception(error)
            return None
