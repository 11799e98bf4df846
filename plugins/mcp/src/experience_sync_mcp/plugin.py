"""The hook implementations: the ``mcp`` transport and the hub's ``/mcp`` endpoint."""

from __future__ import annotations

import logging
from typing import Any

from experience_sync.api import ConfigError, ExperienceSyncConfig, Register, hookimpl
from experience_sync_mcp.config import McpConfig
from experience_sync_mcp.transport import McpTransport

log = logging.getLogger("experience_sync_mcp")


def create_transport(config: ExperienceSyncConfig, agent_id: str) -> McpTransport:
    """Build the ``mcp`` transport from ``transport.mcp`` (``server``, ``tool_name``, ``auth_token``)."""
    section = config.section("transport.mcp", McpConfig)
    if not section.server:
        raise ConfigError(
            [("transport.mcp.server", "the hub's MCP endpoint URL is required for the mcp transport")]
        )
    token = section.auth_token.get_secret_value() if section.auth_token else None
    return McpTransport(
        section.server, agent_id=agent_id, auth_token=token, tool_name=section.tool_name
    )


@hookimpl
def experience_sync_register_transports(register: Register) -> None:
    """Register ``mcp``."""
    register("mcp", create_transport)


@hookimpl
def experience_sync_register_config_sections(register: Register) -> None:
    """Register ``transport.mcp`` (:class:`McpConfig`)."""
    register("transport.mcp", McpConfig)


@hookimpl
def experience_sync_register_hub_routes(app: Any, hub: Any) -> None:
    """Mount the hub's ``/mcp`` endpoint (only with the mcp 1.x SDK; else log a warning)."""
    try:
        from experience_sync_mcp.server import mount
    except ImportError as exc:  # the 2.x SDK: instances can still use the transport
        log.warning("the hub serves no /mcp endpoint: it needs the mcp 1.x SDK (%s)", exc)
        return
    mount(app, hub)
