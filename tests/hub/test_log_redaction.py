"""No token reaches the hub's logs, however the query string spells it.

A real hub with uvicorn's access log on; every line its loggers write is
collected and searched for the token.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from experience_sync.hub.web.server import HubServer, run_in_thread, uvicorn_config

SPELLINGS = [
    "access_token",
    "access%5Ftoken",
    "access%5ftoken",
    "%61ccess_token",
    "%61%63%63%65%73%73%5F%74%6F%6B%65%6E",
    "ACCESS_TOKEN",
    "Access_Token",
    "ACCESS%5FTOKEN",
    "access%255Ftoken",
    "token",
    "Token",
    "%74oken",
    "id_token",
]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged_hub() -> Iterator[tuple[HubServer, int, Lines]]:
    """A hub, served a second time by a uvicorn that logs access, as ``serve`` does."""
    with run_in_thread() as hs:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn_config(hs.hub, "127.0.0.1", port, log_level="debug", access_log=True)
        server = uvicorn.Server(config)
        lines = Lines()
        loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
        for lg in loggers:  # after the config, which sets uvicorn's own handlers
            lg.addHandler(lines)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.01)
        try:
            yield hs, port, lines
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()
            for lg in loggers:
                lg.removeHandler(lines)


@pytest.mark.parametrize("name", SPELLINGS)
def test_websocket_handshake_token_is_not_logged(
    logged_hub: tuple[HubServer, int, Lines], name: str
) -> None:
    hs, port, lines = logged_hub
    token = hs.create_token("a1", "i1")
    url = f"ws://127.0.0.1:{port}/v1/agents/a1/ws?{name}={token}&x=1"
    try:
        with connect(url, open_timeout=10):
            pass
        accepted = True
    except InvalidStatus:
        accepted = False  # spellings the hub does not read as the token: refused
    if name in ("access_token", "access%5Ftoken", "access%5ftoken", "%61ccess_token"):
        assert accepted  # the hub reads these as access_token
    text = "\n".join(lines.lines)
    assert "/v1/agents/a1/ws" in text  # the handshake was logged...
    assert token not in text  # ...without the token


@pytest.mark.parametrize("name", SPELLINGS)
def test_http_query_token_is_not_logged(
    logged_hub: tuple[HubServer, int, Lines], name: str
) -> None:
    hs, port, lines = logged_hub
    token = hs.create_token("a1", "i1")
    base = f"http://127.0.0.1:{port}/v1/agents/a1"
    for url in (f"{base}/state?{name}={token}", f"{base}/search?q=paris&{name}={token}&k=3",
                f"{base}/state?since=0;{name}={token}"):
        httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        httpx.get(url, timeout=10)  # refused (401): logged as well
    text = "\n".join(lines.lines)
    assert "GET /v1/agents/a1/state?" in text
    assert "q=paris" in text  # other parameters stay readable
    assert token not in text
