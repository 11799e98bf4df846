"""Running the hub: uvicorn in the foreground (``experience-sync serve``) or in a thread.

:func:`run_in_thread` is the public helper tests, examples and benchmarks use
to get a real hub on a free loopback port::

    with run_in_thread() as server:          # temporary SQLite store
        token = server.create_token("agent", "instance-1")
        httpx.post(f"{server.url}/v1/agents/agent/events", ...)
        server.restart()                     # same port, same store
"""

from __future__ import annotations

import gc
import logging
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import uvicorn

from experience_sync.config import (
    MergeStrategyConfig,
    RecallConfig,
    RetentionConfig,
    is_loopback_host,
)
from experience_sync.hub.web.app import Hub, HubLimits, create_app
from experience_sync.hub.web.auth import Scope, create_token
from experience_sync.plugins import ExperienceSyncPluginManager

if TYPE_CHECKING:
    from experience_sync.hub.engine import MergeEngine

#: Query parameters whose values never reach a log, compared after
#: percent-decoding and case-folding (``access%5Ftoken``, ``ACCESS_TOKEN``, ...);
#: any name containing ``token`` is redacted too.
SENSITIVE_QUERY_NAMES = frozenset(
    {"access_token", "token", "auth", "authorization", "api_key", "apikey", "key",
     "password", "secret", "bearer", "jwt", "session", "sig", "signature"}
)
#: Routes whose query strings are never logged: they accept a token there.
_TOKEN_ROUTES = re.compile(r"/v1/agents/[^/?\s]+/ws$")
_PATH_AND_QUERY = re.compile(r"([^\s\"'?]*)\?([^\s\"']*)")


def _sensitive(name: str) -> bool:
    for _ in range(3):  # a doubly encoded name is still a token's name
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    name = name.strip().casefold()
    return name in SENSITIVE_QUERY_NAMES or "token" in name


def redact_query_strings(text: str) -> str:
    """``text`` with every query string made safe to log.

    On a token-bearing route (the WebSocket) the query string is dropped; on
    others each parameter whose decoded name is sensitive keeps its name and
    loses its value (``access_token=REDACTED``).
    """
    if "?" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        path, query = m.group(1), m.group(2)
        if _TOKEN_ROUTES.search(path):
            return f"{path}?[query not logged]"
        parts = re.split(r"([&;])", query)
        for i in range(0, len(parts), 2):
            name, eq, _ = parts[i].partition("=")
            if _sensitive(name):
                parts[i] = f"{name}{eq or '='}REDACTED"
        return f"{path}?{''.join(parts)}"

    return _PATH_AND_QUERY.sub(one, text)


class TokenRedactingFilter(logging.Filter):
    """Redacts tokens in query strings of log records (uvicorn's logs print them).

    Names are matched after percent-decoding, so ``?access%5Ftoken=...`` (which
    the hub reads as ``access_token``) is redacted like the literal spelling.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message and string arguments in place; always keep it."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query_strings(a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_query_strings(record.msg)
        return True


#: uvicorn's messages about a client's fault that it logs with a traceback:
#: the client already got its answer (a WebSocket text frame that is not
#: UTF-8 is closed with 1007), so one line is enough.
CLIENT_FAULT_MESSAGES = ("Invalid UTF-8 sequence received from client",)


class ClientFaultFilter(logging.Filter):
    """Logs a client's fault that uvicorn reports with a traceback as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Turn a client-fault record into a one-line warning in place; always keep it."""
        if record.exc_info and isinstance(record.msg, str) and record.msg.startswith(CLIENT_FAULT_MESSAGES):
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = record.msg.rstrip(".") + " (closed with 1007)"
        return True


_filter_installed = False
_filter_lock = threading.Lock()


def install_log_redaction() -> None:
    """Attach :class:`TokenRedactingFilter` and :class:`ClientFaultFilter` to uvicorn's loggers (once per process)."""
    global _filter_installed
    with _filter_lock:
        if _filter_installed:
            return
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(TokenRedactingFilter())
        logging.getLogger("uvicorn.error").addFilter(ClientFaultFilter())
        _filter_installed = True


class UnsafeBindError(ValueError):
    """``--no-auth`` was asked for on an address beyond loopback."""


def check_bind(host: str, auth: bool) -> None:
    """Refuse an unauthenticated hub on anything but loopback."""
    if not auth and not is_loopback_host(host):
        raise UnsafeBindError(
            f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), "
            f"not {host!r}: anyone who can reach {host} could write to every agent. "
            "Create tokens with 'experience-sync token create' instead."
        )


def uvicorn_config(
    hub: Hub,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> uvicorn.Config:
    """The uvicorn configuration the hub runs with (no WebSocket compression: CPU matters)."""
    check_bind(host, hub.auth.enabled)
    install_log_redaction()
    return uvicorn.Config(
        create_app(hub),
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        access_log=access_log,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=hub.limits.max_body_bytes,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )


#: Container objects allocated between two young-generation garbage
#: collections in a process that serves a hub (Python's default is 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc(gen0: int | None = None) -> None:
    """Collect young garbage every ``gen0`` allocations instead of Python's 700.

    A hub keeps every agent's memories and similarity index in memory (about
    ten tracked objects a memory), and merging a 100-event request allocates
    tens of thousands of short-lived ones. At Python's default most of those
    outlive a young collection and are promoted, which triggers full
    collections over the whole index again and again: measured on the ingest
    benchmark, a quarter of the hub's CPU and a p99 latency five times
    higher. With ``10_000`` the request's objects die young and full
    collections become rare (docs/benchmarks.md). Cyclic garbage is still
    collected. ``experience-sync serve`` and ``replay`` call this for their
    own process; a program that embeds a hub decides for itself. ``0`` or a
    threshold already higher leaves the setting alone; ``None`` is
    :data:`GC_GEN0_THRESHOLD`.
    """
    if gen0 is None:
        gen0 = GC_GEN0_THRESHOLD
    current = gc.get_threshold()
    if gen0 > current[0]:
        gc.set_threshold(gen0, *current[1:])


def serve(hub: Hub, host: str = "127.0.0.1", port: int = 8787, **options: Any) -> None:
    """Serve ``hub`` in the foreground until interrupted, then close it."""
    config = uvicorn_config(hub, host, port, **options)
    hub.expect_warm()
    threading.Thread(target=hub.warm, name="hub-warm-up", daemon=True).start()
    try:
        uvicorn.Server(config).run()
    finally:
        hub.close()


class HubServer:
    """A hub served by uvicorn on a background thread.

    :param hub: the hub to serve.
    :param host: a loopback address normally.
    :param port: ``0`` picks a free port (kept across :meth:`restart`).
    :param ssl_certfile: serve HTTPS/WSS with this certificate (and ``ssl_keyfile``).
    """

    def __init__(
        self,
        hub: Hub,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (``https`` with TLS)."""
        return f"{'https' if self.ssl_certfile else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL, e.g. ``ws://127.0.0.1:54321`` (``wss`` with TLS)."""
        return f"{'wss' if self.ssl_certfile else 'ws'}://{self.host}:{self.port}"

    @property
    def engine(self) -> MergeEngine:
        """The hub's merge engine."""
        return self.hub.engine

    def create_token(self, agent_id: str, instance_id: str, scope: Scope = "write") -> str:
        """Create a token in the hub's store and return it."""
        token, _ = create_token(self.hub.store, agent_id, instance_id, scope)
        return token

    def start(self) -> HubServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn_config(
            self.hub,
            self.host,
            self.port,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"hub-{self.port}", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise RuntimeError("the hub server failed to start")
            thread.join(0.01)
        # Kept open until stop(): with some Python builds (Debian's 3.11.2)
        # uvicorn listens on this very socket, and closing it here stops the hub.
        self._server, self._thread, self._sock = server, thread, sock
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (the hub and its store stay open for :meth:`start`)."""
        if self._server is None or self._thread is None:
            return
        self.hub.events.end_streams()
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def restart(self) -> None:
        """Stop and start again on the same port (clients see a dropped connection)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop serving and close the hub."""
        self.stop()
        self.hub.close()


@contextmanager
def run_in_thread(
    store_url: str | None = None,
    *,
    strategy: MergeStrategyConfig | None = None,
    pm: ExperienceSyncPluginManager | None = None,
    auth: bool = True,
    limits: HubLimits | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    recall: RecallConfig | None = None,
    retention: RetentionConfig | None = None,
) -> Iterator[HubServer]:
    """A real hub on ``host`` (a free port by default), stopped and closed on exit.

    :param store_url: the store; default a SQLite file in a temporary directory
        removed afterwards.
    :param strategy: the merge strategy (default configuration if ``None``).
    :param pm: plugin manager (default the process-wide one).
    :param auth: ``False`` for an unauthenticated (loopback-only) hub.
    :param limits: body size limits.
    :param ssl_certfile: with ``ssl_keyfile``, serve HTTPS/WSS.
    :param recall: how the search route ranks.
    :param retention: retention and compaction on a schedule (the config's ``retention``).
    """
    tmp: str | None = None
    if store_url is None:
        tmp = tempfile.mkdtemp(prefix="xs-hub-")
        store_url = f"sqlite:///{Path(tmp) / 'hub.db'}"
    check_bind(host, auth)
    hub = Hub.open(
        store_url, strategy=strategy, pm=pm, auth=auth, limits=limits, recall=recall,
        retention=retention,
    )
    server = HubServer(hub, host, port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    try:
        server.start()
        yield server
    finally:
        server.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
