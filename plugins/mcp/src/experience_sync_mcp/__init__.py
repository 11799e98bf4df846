"""experience-sync over the Model Context Protocol.

Installs two things through the ``experience_sync`` entry point:

- on the hub, an MCP server at ``/mcp`` (streamable HTTP, stateless) with the
  tools ``sync_experiences`` and ``get_state`` (syncing), ``search_experiences``
  and ``get_source_agent`` (consulting the source agent), authenticated with
  the hub's bearer tokens;
- on instances, the ``mcp`` transport (``transport.type = "mcp"``), which
  ships every unit by calling ``sync_experiences``.
"""

from __future__ import annotations

from experience_sync_mcp.transport import McpTransport

__all__ = ["McpTransport"]
