"""Built-in sync protocols: ``streaming``, ``lumped``, ``check_in`` (see :mod:`experience_sync.client.protocols`)."""

from __future__ import annotations

from experience_sync.client.protocols import CheckInProtocol, LumpedProtocol, StreamingProtocol
from experience_sync.hookspecs import Register, hookimpl


@hookimpl
def experience_sync_register_protocols(register: Register) -> None:
    """Register ``streaming``, ``lumped`` and ``check_in``."""
    register("streaming", StreamingProtocol)
    register("lumped", LumpedProtocol)
    register("check_in", CheckInProtocol)
