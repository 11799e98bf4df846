"""Wire-level pieces of the hub API: limits, errors, body decoding and parsing.

Kept apart from :mod:`experience_sync.hub.app` (the routes) so that other
transports mounted on the hub (the MCP plugin, ...) can parse and answer
units exactly like the HTTP and WebSocket routes do.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import zstandard
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from experience_sync.models import (
    WIRE,
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    InstanceStatus,
    KnowledgeItem,
    Memory,
    Review,
    Skill,
)

#: Default cap on a request body as received (``--max-body-bytes``).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Default cap on a body after ``Content-Encoding`` is undone (``--max-decompressed-bytes``).
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

Kind = Literal["events", "batch", "checkin"]
UNIT_MODELS: dict[str, type[EventsRequest] | type[ExperienceBatch] | type[CheckIn]] = {
    "events": EventsRequest,
    "batch": ExperienceBatch,
    "checkin": CheckIn,
}
DEFAULT_PROTOCOL = {"events": "streaming", "batch": "lumped", "checkin": "check_in"}


@dataclass
class HubLimits:
    """Size limits; a request beyond one is answered 413."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES


class HubError(Exception):
    """An error answered as ``{"error": {"status", "message", "details"?}}``."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        err: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


class MemoryPage(BaseModel):
    """A page of ``GET /v1/agents/{agent_id}/memories``."""

    model_config = ConfigDict(extra="forbid")

    items: list[Memory]
    total: int
    offset: int
    limit: int


class ReviewDecision(BaseModel):
    """Body of ``POST /v1/agents/{agent_id}/reviews/{review_id}``."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "reject"]


class Health(BaseModel):
    """Body of ``GET /healthz``."""

    status: str = "ok"
    auth: bool = True


LIST_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {
    t: TypeAdapter(list[t]) for t in (Skill, KnowledgeItem, InstanceStatus, Review)  # type: ignore[valid-type]
}


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc": "events.0.data.content", "msg", "type"}]``."""
    return [
        {"loc": ".".join(str(p) for p in err["loc"]) or "(body)", "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False)
    ]


def decode_body(body: bytes, encoding: str | None, cap: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip, zstd), refusing output beyond ``cap`` (413)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    try:
        if enc in ("gzip", "x-gzip"):
            parts: list[bytes] = []
            size = 0
            rest = body
            while True:  # a gzip stream may hold several members
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(rest, cap + 1 - size)
                size += len(out)
                if size > cap or d.unconsumed_tail:
                    raise HubError(413, f"decompressed body exceeds {cap} bytes")
                if not d.eof:
                    raise HubError(400, "truncated gzip body")
                parts.append(out)
                rest = d.unused_data
                if not rest:
                    return b"".join(parts)
        if enc == "zstd":
            parts = []
            size = 0
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                while chunk := reader.read(min(cap + 1 - size, 1 << 20) or 1):
                    parts.append(chunk)
                    size += len(chunk)
                    if size > cap:
                        raise HubError(413, f"decompressed body exceeds {cap} bytes")
            return b"".join(parts)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise HubError(400, f"body is not valid {enc}: {exc}") from None
    raise HubError(415, f"unsupported Content-Encoding {encoding!r}; use gzip, zstd or identity")


def parse_unit(kind: str, raw: bytes | str | Any) -> EventsRequest | ExperienceBatch | CheckIn:
    """Parse and validate a unit: 400 for bad JSON, 422 naming the failing field."""
    model = UNIT_MODELS[kind]
    if isinstance(raw, (bytes, str)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HubError(400, f"body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(raw, context=WIRE)
    except ValidationError as exc:
        details = validation_details(exc)
        raise HubError(422, f"invalid {model.__name__}: {details[0]['loc']}: {details[0]['msg']}", details) from None



def bearer_token(headers: Any) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def endpoint_label(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[:2] == ["v1", "agents"]:
        return "review_decision" if len(parts) == 5 else parts[3]
    return path if path in ("/healthz", "/metrics", "/v1/events", "/openapi.json") else "other"



# ---------------------------------------------------------------------- OpenAPI

BODY_MODELS: dict[str, type[BaseModel]] = {
    "EventsRequest": EventsRequest,
    "ExperienceBatch": ExperienceBatch,
    "CheckIn": CheckIn,
    "ReviewDecision": ReviewDecision,
}


def body_schema(name: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Add the request body models (parsed by hand, so FastAPI cannot see them)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in BODY_MODELS.items():
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for def_name, definition in body.pop("$defs", {}).items():
                    components.setdefault(def_name, definition)
                components[name] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
