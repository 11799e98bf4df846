"""``[transport.mcp]``: the MCP transport's configuration table."""

from __future__ import annotations

from pydantic import SecretStr, ValidationInfo, field_validator

from experience_sync.api import ConfigSection, check_url


class McpConfig(ConfigSection):
    """``transport.mcp``: a tool call on the hub's MCP server."""

    _url_fields = ("server",)
    endpoint_field = "server"

    # Declared before the URL so that the URL's validator can read it.
    allow_insecure_http: bool = False
    server: str | None = None
    tool_name: str = "sync_experiences"
    auth_token: SecretStr | None = None

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_url(
            value, "https", "http", bool(info.data.get("allow_insecure_http", False))
        )
