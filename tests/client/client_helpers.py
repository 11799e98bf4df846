"""Helpers for the instance-side tests (importable as ``client_helpers``).

``fault_hub`` is a small real server (uvicorn on loopback) that speaks the
wire contract of ``DEVELOPERS.md`` and follows a script of faults (status
codes with ``Retry-After``, slow answers, dropped WebSocket connections).
``reset_proxy`` is a TCP proxy that resets the first connections it accepts.
The end-to-end tests use the real hub instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from experience_sync.config import ExperienceSyncConfig
from experience_sync.interfaces import SyncRequest
from experience_sync.models import AgentState, MergeResult

KINDS = {"events": "events", "batches": "batch", "checkins": "checkin"}


@dataclass
class FaultHub:
    """State and fault script of the fake hub."""

    url: str = ""
    ws_url: str = ""
    #: each entry answers one HTTP request: ``("status", code, headers)``,
    #: ``("sleep", seconds)`` (then answers normally) or ``("ok",)``.
    http_faults: list[tuple[Any, ...]] = field(default_factory=list)
    #: each entry answers one WebSocket frame: ``("drop",)`` closes the connection
    #: without acknowledging, ``("error", status)`` answers an error ack.
    ws_faults: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    connections: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unique(self) -> set[str]:
        return set(self.event_ids)

    def _take(self, faults: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        with self.lock:
            return faults.pop(0) if faults else ("ok",)

    def _accept(self, kind: str, payload: dict[str, Any], meta: dict[str, Any]) -> bytes:
        events = payload.get("events", [])
        with self.lock:
            seen = set(self.event_ids)
            self.requests.append({"kind": kind, "payload": payload, "meta": meta})
            ids = [e["event_id"] for e in events]
            self.event_ids.extend(ids)
        result = MergeResult(
            agent_id="agent",
            events_received=len(events),
            accepted_event_ids=[i for i in ids if i not in seen],
            duplicate_event_ids=[i for i in ids if i in seen],
            cursor=len(self.event_ids),
        )
        return result.model_dump_json().encode()

    async def http(self, request: Request) -> Response:
        fault = self._take(self.http_faults)
        if fault[0] == "status":
            body = orjson.dumps({"error": {"status": fault[1], "message": "scripted"}})
            return Response(body, fault[1], headers=fault[2] if len(fault) > 2 else None)
        if fault[0] == "sleep":
            await asyncio.sleep(fault[1])
        raw = await request.body()
        encoding = request.headers.get("content-encoding")
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "zstd":
            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 28)
        meta = {k: v for k, v in request.headers.items() if k.startswith("x-experience-sync")}
        meta["authorization"] = request.headers.get("authorization", "")
        meta["content-encoding"] = encoding or "none"
        kind = KINDS[request.path_params["kind"]]
        body = self._accept(kind, orjson.loads(raw), meta)
        return Response(body, 200, media_type="application/json")

    async def state(self, request: Request) -> Response:
        since = request.query_params.get("since")
        state = AgentState(agent_id=request.path_params["agent"], cursor=len(self.event_ids))
        headers = {"x-since": since or ""}
        return Response(state.model_dump_json(), 200, media_type="application/json",
                        headers=headers)

    async def ws(self, websocket: WebSocket) -> None:
        with self.lock:
            self.connections += 1
        await websocket.accept()
        inflight = 0
        try:
            while True:
                frame = orjson.loads(await websocket.receive_text())
                inflight += 1
                self.max_inflight = max(self.max_inflight, inflight)
                fault = self._take(self.ws_faults)
                if fault[0] == "drop":
                    await websocket.close(code=1011)
                    return
                if fault[0] == "error":
                    ack = {"id": frame["id"], "ok": False,
                           "error": {"status": fault[1], "message": "scripted"}}
                else:
                    meta = dict(frame.get("meta") or {})
                    meta["authorization"] = websocket.headers.get("authorization", "")
                    result = self._accept(frame["kind"], frame["payload"], meta)
                    ack = {"id": frame["id"], "ok": True, "result": orjson.loads(result)}
                inflight -= 1
                await websocket.send_text(orjson.dumps(ack).decode())
        except WebSocketDisconnect:
            return

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/agents/{agent}/state", self.state, methods=["GET"]),
                Route("/v1/agents/{agent}/{kind}", self.http, methods=["POST"]),
                WebSocketRoute("/v1/agents/{agent}/ws", self.ws),
            ]
        )


class ThreadServer:
    """An ASGI app served by uvicorn on a loopback port, restartable on the same port."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> ThreadServer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="error", access_log=False, lifespan="off",
            ws="websockets-sansio", ws_per_message_deflate=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            thread.join(0.01)
        # Kept open until stop(): uvicorn (0.55 and Debian's Python builds) may
        # listen on this very socket, and closing it here stops the server.
        self._server, self._thread, self._sock = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


class ResetProxy:
    """Forwards TCP to ``upstream``, resetting (RST) the first ``resets`` connections."""

    def __init__(self, upstream_port: int, resets: int) -> None:
        self.upstream_port = upstream_port
        self.resets = resets
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.resets:
                conn.recv(65536)  # let the request arrive, then reset mid-exchange
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self._sock.close()


@dataclass
class Recorder:
    """A MockTransport handler that acknowledges and remembers every unit."""

    requests: list[SyncRequest] = field(default_factory=list)
    fail_with: list[BaseException] = field(default_factory=list)

    def __call__(self, request: SyncRequest) -> MergeResult:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.requests.append(request)
        ids = [e.event_id for e in request.payload.events]
        return MergeResult(accepted_event_ids=ids, events_received=len(ids))

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for r in self.requests for e in r.payload.events]


def make_config(**sections: Any) -> ExperienceSyncConfig:
    """A validated config from nested dicts."""
    return ExperienceSyncConfig.model_validate(sections)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``; a test helper, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
