"""experience-sync for ElizaOS.

Two faces, one mapping (:mod:`experience_sync_elizaos.mapping`):

* the bridge service (``experience-sync elizaos-bridge``) that the TypeScript
  plugin ``@experience-sync/elizaos-plugin`` posts runtime events to;
* :func:`attach`, which hooks a Python ``elizaos`` ``AgentRuntime``.
"""

from __future__ import annotations

from experience_sync_elizaos.bridge import WIRE_SCHEMA, create_bridge_app
from experience_sync_elizaos.mapping import MappingOptions, map_event, redact_secrets
from experience_sync_elizaos.runtime import attach
from experience_sync_elizaos.server import BridgeServer, run_bridge, start_manager

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
