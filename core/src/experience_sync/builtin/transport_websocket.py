"""Built-in transport ``websocket`` (see :mod:`experience_sync.client.transports.websocket`)."""

from __future__ import annotations

from experience_sync.client.transports.websocket import WebSocketTransport
from experience_sync.hookspecs import Register, hookimpl


@hookimpl
def experience_sync_register_transports(register: Register) -> None:
    """Register ``websocket``."""
    register("websocket", WebSocketTransport)
