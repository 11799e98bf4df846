"""The ``websocket`` transport: pipelined frames over one connection (websockets).

Connects to ``transport.websocket.url`` (``wss://hub.example``; the path
``/v1/agents/{agent_id}/ws`` is added when the URL has none; without a URL it
is derived from ``transport.https.endpoint``) with ``Authorization: Bearer``
on the handshake. Each unit is a frame ``{"id", "kind", "payload", "meta"}``;
up to ``window`` frames are in flight before an acknowledgement
``{"id", "ok", "result" | "error"}`` is needed.

When the connection drops, the transport reconnects with backoff and re-sends
every frame that was not acknowledged (under a new frame id; the hub's
idempotency makes a second delivery harmless), all within the send deadline.
A 401/403 on the handshake is a :class:`~experience_sync.errors.RejectedError`.
``fetch_state`` uses the hub's HTTP API on the same host.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from experience_sync.client.retry import Backoff, OnRetry, status_error
from experience_sync.client.transports.https import HttpClient, bearer
from experience_sync.config import ExperienceSyncConfig
from experience_sync.errors import ConfigError, RejectedError, RetryableError, TransportError
from experience_sync.interfaces import SyncRequest, Transport
from experience_sync.models import AgentState, MergeResult
from experience_sync.recall.models import SearchQuery, SearchResults


def ws_url(url: str, agent_id: str) -> str:
    """The full WebSocket URL: ``/v1/agents/{agent_id}/ws`` added to a bare host URL."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path in ("", "/v1"):
        path = f"/v1/agents/{quote(agent_id, safe='')}/ws"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def http_base(url: str) -> str:
    """The HTTP base URL of the hub serving a WebSocket URL."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class WebSocketTransport(Transport):
    """Ships units as frames over a WebSocket, pipelining up to ``window`` of them."""

    name = "websocket"

    def __init__(self, config: ExperienceSyncConfig, agent_id: str) -> None:
        cfg = config.transport.websocket
        https = config.transport.https
        url = cfg.url
        if url is None and https.endpoint:
            base = http_base(https.endpoint)
            url = "ws" + base[len("http"):] if base.startswith("http") else base
        if not url:
            raise ConfigError(
                [("transport.websocket.url", "the websocket transport needs the hub's URL")]
            )
        self.url = ws_url(url, agent_id)
        self.window = cfg.window
        self.subprotocols = list(cfg.protocols)
        self.timeout = https.timeout
        token = bearer(cfg.auth_token if cfg.auth_token is not None else https.auth_token)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self.http = HttpClient(
            http_base(self.url), agent_id, token=token, verify_tls=https.verify_tls,
            transport_name=self.name,
        )
        self.on_retry: OnRetry | None = None

    # ------------------------------------------------------------------ connection

    def _connect(self, backoff: Backoff) -> ClientConnection:
        while self._ws is None:
            left = backoff.remaining()
            if left <= 0:
                raise RetryableError(f"could not connect to {self.url}")
            error: TransportError
            try:
                # Entering the connection is how websockets >= 17.1 hands out a
                # long-lived one without a deprecation warning (older versions too).
                self._ws = connect(
                    self.url,
                    additional_headers=self._headers,
                    subprotocols=self.subprotocols or None,  # type: ignore[arg-type]
                    compression=None,
                    open_timeout=min(left, 10.0),
                    max_size=None,
                    user_agent_header="experience-sync",
                ).__enter__()
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = exc.response.body or b""
                error = status_error(status, body.decode("utf-8", "replace")[:200] or "handshake")
                if not isinstance(error, RetryableError):
                    raise error from None
                backoff.wait(error)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                backoff.wait(RetryableError(f"connect failed: {type(exc).__name__}: {exc}"))
        return self._ws

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):  # the socket may already be gone
                ws.close()

    # ------------------------------------------------------------------ sending

    def _frame(self, frame_id: str, request: SyncRequest) -> str:
        meta = {**request.meta, "transport": self.name}
        return (
            f'{{"id":"{frame_id}","kind":"{request.kind}",'
            f'"meta":{orjson.dumps(meta).decode()},'
            f'"payload":{request.payload.model_dump_json()}}}'
        )

    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        """Send one unit as :meth:`send_many` does; raises the error it ended with."""
        result = self.send_many([request], timeout=timeout)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def send_many(
        self, requests: Sequence[SyncRequest], *, timeout: float
    ) -> list[MergeResult | BaseException]:
        """Send the units as frames, up to ``window`` unacknowledged at a time.

        Returns one entry per request, in order: the hub's result or the
        error. On a lost connection the unacknowledged frames are sent again,
        in order, after a reconnect; once ``timeout`` passes, what is still
        unacknowledged ends with a :class:`RetryableError`.
        """
        backoff = Backoff(time.monotonic() + timeout, self.on_retry)
        results: list[MergeResult | BaseException | None] = [None] * len(requests)
        todo: deque[int] = deque(range(len(requests)))
        inflight: dict[str, int] = {}
        while todo or inflight:
            try:
                ws = self._connect(backoff)
                while todo and len(inflight) < self.window:
                    idx = todo.popleft()
                    frame_id = str(next(self._ids))
                    inflight[frame_id] = idx
                    ws.send(self._frame(frame_id, requests[idx]))
                left = backoff.remaining()
                if left <= 0:
                    raise TimeoutError
                self._receive(ws.recv(timeout=left), inflight, results)
            except TransportError as exc:  # connect gave up, or the handshake was refused
                for idx in [*inflight.values(), *todo]:
                    results[idx] = exc
                inflight.clear()
                todo.clear()
            except TimeoutError:
                self._drop()  # late acks would carry ids we no longer wait for
                error = RetryableError(f"no acknowledgement within {timeout:.1f}s")
                for idx in [*inflight.values(), *todo]:
                    results[idx] = error
                inflight.clear()
                todo.clear()
            except (ConnectionClosed, OSError) as exc:
                self._drop()
                # Re-send, in order, everything not acknowledged on the lost connection.
                todo.extendleft(sorted(inflight.values(), reverse=True))
                inflight.clear()
                try:
                    backoff.wait(RetryableError(f"connection lost: {exc}"))
                except RetryableError as final:
                    for idx in todo:
                        results[idx] = final
                    todo.clear()
        return [r if r is not None else RetryableError("not sent") for r in results]

    def _receive(
        self,
        message: str | bytes,
        inflight: dict[str, int],
        results: list[MergeResult | BaseException | None],
    ) -> None:
        ack: Any = orjson.loads(message)
        idx = inflight.pop(str(ack.get("id")), None)
        if idx is None:
            return  # an acknowledgement of a frame from a lost connection
        if ack.get("ok"):
            results[idx] = MergeResult.model_validate(ack.get("result") or {})
            return
        err = ack.get("error") or {}
        status = int(err.get("status") or 500)
        results[idx] = status_error(status, str(err.get("message") or "refused"))
        if isinstance(results[idx], RejectedError) and status in (401, 403):
            self._drop()

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        """``GET /v1/agents/{agent_id}/state`` on the hub's HTTP API (not over the socket)."""
        return self.http.fetch_state(since, timeout)

    def search(self, query: SearchQuery, *, timeout: float = 30.0) -> SearchResults:
        """``POST /v1/agents/{agent_id}/search`` on the hub's HTTP API (not over the socket)."""
        return self.http.search(query, timeout)

    def close(self) -> None:
        """Close the socket and the HTTP connection pool."""
        self._drop()
        self.http.close()
