"""experience-sync for ElizaOS.

Two faces, one mapping (:mod:`experience_sync_elizaos.mapping`):

* the bridge service (``experience-sync elizaos-bridge``) that the TypeScript
  plugin ``@experience-sync/elizaos-plugin`` posts runtime events to;
* :func:`attach`, which hooks a Python ``elizaos`` ``AgentRuntime``.

Names are imported on first use: the ``experience-sync`` command loads this
package's entry point on every run and must not pay for FastAPI each time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experience_sync_elizaos.bridge import WIRE_SCHEMA, create_bridge_app
    from experience_sync_elizaos.mapping import MappingOptions, map_event, redact_secrets
    from experience_sync_elizaos.runtime import attach
    from experience_sync_elizaos.server import BridgeServer, run_bridge, start_manager

_EXPORTS = {
    "WIRE_SCHEMA": "bridge",
    "create_bridge_app": "bridge",
    "MappingOptions": "mapping",
    "map_event": "mapping",
    "redact_secrets": "mapping",
    "attach": "runtime",
    "BridgeServer": "server",
    "run_bridge": "server",
    "start_manager": "server",
}

__all__ = [
    "WIRE_SCHEMA",
    "BridgeServer",
    "MappingOptions",
    "attach",
    "create_bridge_app",
    "map_event",
    "redact_secrets",
    "run_bridge",
    "start_manager",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
