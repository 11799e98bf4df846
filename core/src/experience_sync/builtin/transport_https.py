"""Built-in transport ``https`` (see :mod:`experience_sync.client.transports.https`)."""

from __future__ import annotations

from experience_sync.client.transports.https import HttpsTransport
from experience_sync.hookspecs import Register, hookimpl


@hookimpl
def experience_sync_register_transports(register: Register) -> None:
    """Register ``https``."""
    register("https", HttpsTransport)
